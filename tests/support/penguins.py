"""The bundled penguins as a BigQuery table holds them: its schema and rows (the BigQuery source tests load them)."""
import csv

PENGUIN_SCHEMA = (("species", "STRING"), ("island", "STRING"), ("bill_length_mm", "FLOAT64"),
                  ("bill_depth_mm", "FLOAT64"), ("flipper_length_mm", "INT64"), ("body_mass_g", "INT64"),
                  ("sex", "STRING"), ("year", "INT64"))


def penguin_records(lines: list[str]) -> list[dict]:
    kinds = dict(PENGUIN_SCHEMA)
    parse = {"STRING": str, "FLOAT64": float, "INT64": int}
    return [{name: None if value == "NA" else parse[kinds[name]](value) for name, value in row.items()}
            for row in csv.DictReader(lines)]
