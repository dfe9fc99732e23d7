import os

import apache_beam as beam
import tensorflow_data_validation as tfdv
from apache_beam.testing.test_pipeline import TestPipeline

from beam_ml.ingest.files.csv_format import infer_csv_format, parse_csv_chunk
from beam_ml.core.layout import STATS_FILE, split_dir
from beam_ml.train.validate import GenerateSplitStatistics, anomaly_records, make_schema, validate_split


def _batch(lines):
    header, rows = lines[0].encode(), "\n".join(lines[1:]).encode() + b"\n"
    return parse_csv_chunk(rows, infer_csv_format(header, rows, {}), "x", lambda: 2).batch


def _statistics(tmp_path, name, lines):
    with TestPipeline() as p:
        _ = p | beam.Create([(name, _batch(lines))]) | GenerateSplitStatistics(str(tmp_path), [name])
    return tfdv.load_stats_binary(os.path.join(split_dir(str(tmp_path), name), STATS_FILE))


def test_split_statistics_from_one_graph_equal_tfdv_run_on_each_split_alone(tmp_path, penguins_rows):
    header, rows = penguins_rows[0], penguins_rows[1:]
    parts = {"train": [header] + rows[:200], "eval": [header] + rows[200:]}
    with TestPipeline() as p:
        keyed = [(name, _batch(lines)) for name, lines in parts.items()]
        _ = p | beam.Create(keyed) | GenerateSplitStatistics(str(tmp_path / "joint"), ["train", "eval", "empty"])
        for name in parts:
            _ = (p | f"Alone{name}" >> beam.Create([_batch(parts[name])])
                 | f"Stats{name}" >> tfdv.GenerateStatistics(tfdv.StatsOptions())
                 | f"Write{name}" >> tfdv.WriteStatisticsToBinaryFile(str(tmp_path / f"{name}.pb")))
    for name in parts:
        joint = tfdv.load_stats_binary(os.path.join(split_dir(str(tmp_path / "joint"), name), STATS_FILE))
        alone = tfdv.load_stats_binary(str(tmp_path / f"{name}.pb"))
        assert joint.datasets[0].num_examples == len(parts[name]) - 1
        assert joint == alone
    empty = tfdv.load_stats_binary(os.path.join(split_dir(str(tmp_path / "joint"), "empty"), STATS_FILE))
    assert len(empty.datasets) == 1 and empty.datasets[0].num_examples == 0


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
