"""Reading a run's artifacts for the report: real TFDV statistics, schemas and anomalies, and run records."""
import json

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv

from beam_ml.core.run import MANIFEST_FILE
from beam_ml.report.read import drift_measurements, feature_stats, previous_run, schema_changes


def _stats(frame: pd.DataFrame):
    return tfdv.generate_statistics_from_dataframe(frame)


def test_feature_stats_summarise_numbers_and_strings_with_their_missing_share():
    frame = pd.DataFrame({"mass": [1.0, 2.0, 3.0, None, 0.0], "island": ["a", "a", "b", None, None]})
    found = feature_stats(_stats(frame).datasets[0])
    mass, island = found["mass"], found["island"]
    assert mass.kind == "numeric" and mass.count == 4 and mass.missing == 0.2
    assert (mass.min, mass.max, mass.mean) == (0.0, 3.0, 1.5) and mass.zeros == 0.25
    assert mass.histogram and sum(n for _, _, n in mass.histogram) == pytest.approx(4)
    assert island.kind == "string" and island.unique == 2 and island.missing == 0.4
    assert island.top[0] == ("a", 2.0)


def test_schema_changes_name_added_and_removed_features_and_new_values():
    before = tfdv.infer_schema(_stats(pd.DataFrame({"island": ["a", "b"] * 10, "old": [1] * 20})))
    after = tfdv.infer_schema(_stats(pd.DataFrame({"island": ["a", "c"] * 10, "new": [1.5] * 20})))
    changes = schema_changes(before, after)
    assert "added feature 'new' (FLOAT)" in changes and "removed feature 'old'" in changes
    assert "'island': new values c" in changes and "'island': values gone b" in changes
    assert schema_changes(None, after) == [] and schema_changes(after, after) == []


def test_drift_measurements_are_tfdv_distances_where_computed():
    previous = _stats(pd.DataFrame({"island": ["a"] * 50 + ["b"] * 50}))
    current = _stats(pd.DataFrame({"island": ["a"] * 90 + ["b"] * 10}))
    schema = tfdv.infer_schema(previous)
    tfdv.get_feature(schema, "island").drift_comparator.infinity_norm.threshold = 0.1
    anomalies = tfdv.validate_statistics(current, schema, previous_statistics=previous)
    found = drift_measurements({"train": anomalies})
    assert [(m["split"], m["kind"], m["type"], round(m["value"], 6), m["threshold"]) for m in found["island"]] == [
        ("train", "drift", "L_INFTY", 0.4, 0.1)]
    assert drift_measurements({"train": tfdv.validate_statistics(current, schema)}) == {}


def test_the_previous_run_is_the_latest_earlier_success_of_the_same_job(tmp_path):
    def run(name, job, status, started):
        (tmp_path / name).mkdir()
        record = {"job": job, "status": status, "started": started}
        (tmp_path / name / MANIFEST_FILE).write_text(json.dumps(record))
        return str(tmp_path / name), record

    older, _ = run("a", "train_pipeline", "succeeded", "2026-01-01T00:00:00+00:00")
    newer, _ = run("b", "train_pipeline", "succeeded", "2026-01-02T00:00:00+00:00")
    run("c", "train_pipeline", "failed", "2026-01-03T00:00:00+00:00")
    run("d", "batch_predict", "succeeded", "2026-01-04T00:00:00+00:00")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / MANIFEST_FILE).write_text("{half a rec")  # a record being written is passed over
    this, record = run("f", "train_pipeline", "running", "2026-01-05T00:00:00+00:00")
    assert previous_run(this, record) == newer
    assert previous_run(newer, {"job": "train_pipeline", "started": "2026-01-02T00:00:00+00:00"}) == older
    assert previous_run(older, {"job": "train_pipeline", "started": "2026-01-01T00:00:00+00:00"}) is None
