import os

import apache_beam as beam
import tensorflow_data_validation as tfdv
from apache_beam.testing.test_pipeline import TestPipeline

from beam_ml.csv_format import infer_csv_format, parse_csv_chunk
from beam_ml.validate import (STATS_FILE, GenerateSplitStatistics, anomaly_records, make_schema, split_dir,
                              validate_split)
from conftest import PENGUINS_CSV


def _statistics(tmp_path, name, lines):
    header, rows = lines[0].encode(), "\n".join(lines[1:]).encode() + b"\n"
    fmt = infer_csv_format(header, rows, {})
    batch = parse_csv_chunk(rows, fmt, "x", lambda: 2).batch
    with TestPipeline() as p:
        _ = p | beam.Create([batch]) | GenerateSplitStatistics(str(tmp_path), name)
    return tfdv.load_stats_binary(os.path.join(split_dir(str(tmp_path), name), STATS_FILE))


def _skew(line: str) -> str:
    fields = line.split(",")
    fields[1] = "Atlantis"  # island
    return ",".join(fields)


def test_stats_schema_anomalies_and_drift_on_real_data(tmp_path, penguins_rows):
    clean = _statistics(tmp_path, "train", penguins_rows)
    assert clean.datasets[0].num_examples == 344
    schema = make_schema(clean)
    island = tfdv.get_domain(schema, "island")
    assert sorted(island.value) == ["Biscoe", "Dream", "Torgersen"]
    assert validate_split(clean, schema).anomaly_info == {}

    skewed = _statistics(tmp_path, "eval", penguins_rows[:1] + [_skew(r) for r in penguins_rows[1:]])
    records = anomaly_records("eval", validate_split(skewed, schema))
    assert [(r["feature"], r["type"]) for r in records] == [("island", "ENUM_TYPE_UNEXPECTED_STRING_VALUES")]
    assert "Atlantis" in records[0]["description"]

    drift = anomaly_records("train", validate_split(skewed, schema, drift_baseline=clean, drift_threshold=0.3))
    assert any(r["feature"] == "island" and "COMPARATOR_L_INFTY_HIGH" in r["type"] for r in drift)
