"""The run every job makes (`RunContext`, its record) and the counts sub-graph every job ends with."""
import json

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_ml.core import counts as measures
from beam_ml.core.counts import CountTotals, step_label
from beam_ml.core.errors import ConfigError
from beam_ml.core.run import MANIFEST_FILE, RunContext


def test_a_run_gets_a_new_directory_and_every_record_has_the_same_header(tmp_path):
    run = RunContext.start("batch_predict", str(tmp_path), None, {"input": "x.csv"})
    assert run.run_dir == str(tmp_path / run.run_id) and run.job == "batch_predict"
    record = run.manifest(model_dir="m", counts={"read": 0}).write("failed", error="boom")
    written = json.loads((tmp_path / run.run_id / MANIFEST_FILE).read_text())
    assert written == record
    assert {k: record[k] for k in ("job", "run_id", "run_dir", "started", "config", "status", "error", "model_dir")} \
        == {"job": "batch_predict", "run_id": run.run_id, "run_dir": run.run_dir, "started": run.started,
            "config": {"input": "x.csv"}, "status": "failed", "error": "boom", "model_dir": "m"}
    assert record["versions"]["apache-beam"] and record["finished"] >= record["started"]
    with pytest.raises(ConfigError, match="^--run_id: .* already exists"):
        RunContext.start("batch_predict", str(tmp_path), run.run_id, {})


def test_count_totals_measure_each_collection_and_name_the_empty_ones():
    batch = pa.RecordBatch.from_pydict({"x": [1, 2, 3]})
    with TestPipeline() as p:
        counted = {"read": p | "Read" >> beam.Create([2, 5]), "dead_letter": p | "Dead" >> beam.Create(["a", "b"]),
                   "split:train": p | "Train" >> beam.Create([batch, batch]),
                   "split:eval": p | "Eval" >> beam.Create([])}
        totals = counted | CountTotals({"read": measures.value, "dead_letter": measures.one,
                                        "split:train": measures.rows, "split:eval": measures.rows})
        assert_that(totals, equal_to([{"read": 7, "dead_letter": 2, "split:train": 6, "split:eval": 0}]))
    assert step_label("split:train") == "SplitTrain" and step_label("dead_letter") == "DeadLetter"
    with pytest.raises(ValueError, match="measures is empty"):
        CountTotals({})


def test_progress_records_keep_what_earlier_stages_computed_and_time_every_stage(tmp_path):
    run = RunContext.start("train_pipeline", str(tmp_path), "r", {})
    manifest = run.manifest(counts=None)
    run.claim(manifest.running())
    manifest.write_progress("read", counts={"read": 3})
    manifest.write_progress("trained")
    running = json.loads((tmp_path / "r" / MANIFEST_FILE).read_text())
    assert running["status"] == "running" and running["stage"] == "trained" and running["counts"] == {"read": 3}
    failed = manifest.write("failed", counts={"read": 3}, error="boom")
    assert [s["stage"] for s in failed["stages"]] == ["started", "read", "trained", "failed"]
    assert failed["stage"] == "trained"  # the last stage the failed run reached
    assert all(s["at"] >= run.started for s in failed["stages"])
