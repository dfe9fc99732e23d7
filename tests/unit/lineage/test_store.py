"""Lineage in a real ML Metadata store (SQLite): training, prediction and detection runs recorded from their records
and artifacts, the store a run that uses a model goes to, and the two documented questions answered from it."""
import json
import os

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from beam_ml.core.errors import ConfigError
from beam_ml.core.layout import RunLayout
from beam_ml.lineage.queries import model_lineage, run_history
from beam_ml.lineage.store import (
    check_store, connection_config, open_store, record_run, record_run_dir, resolve_store)

STAGES = ["started", "read", "data checked", "trained", "evaluated", "succeeded"]


def _run(base, run_id: str, data_sha: str, started: str, stages=STAGES, status="succeeded", baseline=None,
         pushed=True, error=None) -> dict:
    run_dir = str(base / "runs" / run_id)
    layout = RunLayout(run_dir)
    reached = set(stages)
    files = [layout.statistics_file("train"), layout.schema_file, layout.anomalies_file("train")]
    if "trained" in reached:
        files += [os.path.join(layout.transform, "transform_fn", "saved_model.pb"),
                  os.path.join(layout.serving_model, "saved_model.pb")]
    if "evaluated" in reached:
        files.append(os.path.join(layout.evaluation, "BLESSED"))
    for path in files:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()
    pushed_dir = str(base / "serving" / f"{run_id}-version") if pushed and status == "succeeded" else None
    record = {"job": "train_pipeline", "run_id": run_id, "run_dir": run_dir, "status": status, "started": started,
              "finished": started, "error": error, "config": {"module": "transforms.penguins"},
              "inputs": [{"path": "/data/penguins.csv", "sha256": data_sha, "size": 100, "kind": "csv"}],
              "counts": {"read": 10, "dead_letter": 0, "splits": {"train": 7, "eval": 3}},
              "anomalies": [], "metrics": {"accuracy": 0.9} if "evaluated" in reached else {},
              "blessed": True if "evaluated" in reached else None, "baseline_model": baseline,
              "pushed_model_dir": pushed_dir, "stages": [{"stage": s, "at": started} for s in stages]}
    with open(layout.manifest, "w") as f:
        json.dump(record, f)
    return record


def test_what_produced_a_model_is_walked_back_over_two_runs_and_their_data(tmp_path):
    store = open_store(str(tmp_path / "metadata.sqlite"))
    first = _run(tmp_path, "first", "aaa", "2026-01-01T00:00:00+00:00")
    second = _run(tmp_path, "second", "bbb", "2026-01-02T00:00:00+00:00", baseline=first["pushed_model_dir"])
    first_id = record_run(store, first)
    assert record_run(store, second) != first_id
    assert record_run(store, first) == first_id  # recorded once
    lineage = model_lineage(store, second["pushed_model_dir"])
    assert lineage["run"]["run_id"] == "second" and lineage["run"]["metrics"] == {"accuracy": 0.9}
    assert lineage["run"]["module"] == "transforms.penguins" and lineage["run"]["status"] == "succeeded"
    assert [(d["uri"], d["sha256"]) for d in lineage["data"]] == [("/data/penguins.csv", "bbb")]
    assert lineage["baseline"] == [first["pushed_model_dir"]]
    assert lineage["earlier_runs"] == [first["run_dir"]]  # through the baseline it was compared with
    first_lineage = model_lineage(store, first["pushed_model_dir"])
    assert first_lineage["earlier_runs"] == [] and first_lineage["data"][0]["sha256"] == "aaa"
    history = run_history(store, str(tmp_path / "runs"))
    assert [(r["run_id"], r["metrics"], r["data_sha256"]) for r in history] == [
        ("first", {"accuracy": 0.9}, ["aaa"]), ("second", {"accuracy": 0.9}, ["bbb"])]
    with pytest.raises(LookupError, match="no model at"):
        model_lineage(store, str(tmp_path / "nowhere"))


def test_the_same_data_file_is_one_artifact_across_runs(tmp_path):
    store = open_store(str(tmp_path / "metadata.sqlite"))
    for run_id, day in (("a", "01"), ("b", "02")):
        record_run(store, _run(tmp_path, run_id, "same", f"2026-01-{day}T00:00:00+00:00"))
    data_type = store.get_artifact_type("beam_ml.Data").id
    assert len(store.get_artifacts_by_type("beam_ml.Data")) == 1 and data_type


def test_a_run_stopped_by_validation_records_a_failed_stage_with_what_it_wrote(tmp_path):
    store = open_store(str(tmp_path / "metadata.sqlite"))
    failed = _run(tmp_path, "bad", "ccc", "2026-01-03T00:00:00+00:00", stages=["started", "read", "failed"],
                  status="failed", error="data validation found 1 anomalies")
    record_run(store, failed)
    [execution] = store.get_executions()
    assert store.get_execution_types_by_id([execution.type_id])[0].name == "beam_ml.Validate"
    assert execution.last_known_state == execution.FAILED
    assert execution.custom_properties["error"].string_value.startswith("data validation found")
    outputs = [e for e in store.get_events_by_execution_ids([execution.id]) if e.type == e.OUTPUT]
    assert len(outputs) == 3  # statistics, schema, anomalies: what stopped it
    assert run_history(store)[0]["status"] == "failed"


def test_a_run_still_going_is_not_recorded_and_the_store_follows_the_run_s_config(tmp_path):
    running = _run(tmp_path, "now", "ddd", "2026-01-04T00:00:00+00:00", stages=["started"], status="running")
    assert record_run(open_store(str(tmp_path / "m.sqlite")), running) is None
    done = _run(tmp_path, "done", "eee", "2026-01-05T00:00:00+00:00")
    assert record_run_dir(done["run_dir"]) is not None  # the default store, beside the runs
    assert os.path.exists(tmp_path / "runs" / "metadata.sqlite")
    with open(RunLayout(done["run_dir"]).manifest, "w") as f:
        json.dump({**done, "run_dir": done["run_dir"], "config": {"metadata_store": "none"}}, f)
    assert record_run_dir(done["run_dir"]) is None


def test_bad_stores_are_refused_at_launch_naming_the_option(tmp_path):
    for uri in ("mysql://host/db", "mysql://user@host/", "mysql://user@host:port/db", "gs://bucket/metadata.sqlite"):
        with pytest.raises(ConfigError, match="^--metadata_store: "):
            connection_config(uri)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="^--metadata_store: cannot write"):
        check_store(str(tmp_path / "file" / "metadata.sqlite"), "X")
    with pytest.raises(ConfigError, match="^--metadata_store: cannot open mysql://u@127.0.0.1:9/db"):
        check_store("mysql://u@127.0.0.1:9/db", "X")  # nothing listens on port 9


def test_a_run_is_the_same_run_however_its_directory_is_spelled(tmp_path, monkeypatch):
    done = _run(tmp_path, "done", "fff", "2026-01-06T00:00:00+00:00")
    first = record_run_dir(done["run_dir"])
    monkeypatch.chdir(tmp_path)
    assert record_run_dir("runs/done/") == first
    assert len(run_history(open_store(str(tmp_path / "runs" / "metadata.sqlite")))) == 1


def test_a_reused_run_links_the_earlier_run_s_artifacts_and_old_records_still_get_every_stage(tmp_path):
    store = open_store(str(tmp_path / "metadata.sqlite"))
    first = _run(tmp_path, "first", "aaa", "2026-01-01T00:00:00+00:00")
    record_run(store, first)
    artifacts_before = len(store.get_artifacts())
    reused = {**_run(tmp_path, "reused", "aaa", "2026-01-02T00:00:00+00:00", stages=["started", "succeeded"],
                     pushed=False), "cached_from": first["run_dir"], "baseline_model": first["pushed_model_dir"]}
    record_run(store, reused)
    assert len(store.get_artifacts()) == artifacts_before  # the same artifacts, not copies
    assert model_lineage(store, os.path.join(first["run_dir"], "model", "serving"))["earlier_runs"] == []
    old = {k: v for k, v in _run(tmp_path, "old", "bbb", "2026-01-03T00:00:00+00:00").items() if k != "stages"}
    record_run(store, old)  # a record from before runs listed their stages
    assert model_lineage(store, old["pushed_model_dir"])["run"]["run_id"] == "old"


def test_a_push_that_failed_is_a_failed_execution(tmp_path):
    store = open_store(str(tmp_path / "metadata.sqlite"))
    failed = _run(tmp_path, "push-failed", "ccc", "2026-01-04T00:00:00+00:00",
                  stages=["started", "read", "data checked", "trained", "evaluated", "failed"], status="failed",
                  error="LockBusy: serving/.push.lock is held")
    record_run(store, failed)
    types = {t.id: t.name for t in store.get_execution_types()}
    states = {types[e.type_id]: e.last_known_state for e in store.get_executions()}
    assert states["beam_ml.Push"] == store.get_executions()[0].FAILED
    assert states["beam_ml.Evaluate"] == store.get_executions()[0].COMPLETE


def _write(run_dir: str, record: dict, *outputs: str) -> dict:
    """Writes the run record and (empty) output files of a run that used a model; returns the record."""
    for path in (RunLayout(run_dir).manifest, *outputs):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()
    with open(RunLayout(run_dir).manifest, "w") as f:
        json.dump(record, f)
    return record


def _predicted(base, run_id: str, model_dir: str, pushed_from=None, config=None) -> dict:
    """A batch prediction run with `model_dir` on the file the training runs of `_run` read (sha256 "aaa")."""
    run_dir = str(base / "predict" / run_id)
    predictions = os.path.join(run_dir, "predictions", "predictions")
    return _write(run_dir, {
        "job": "batch_predict", "run_id": run_id, "run_dir": run_dir, "status": "succeeded",
        "started": "2026-02-01T00:00:00+00:00", "finished": "2026-02-01T00:01:00+00:00", "error": None,
        "config": config or {}, "model_dir": model_dir, "pushed_from": pushed_from,
        "inputs": [{"path": "/data/penguins.csv", "sha256": "aaa", "size": 100, "kind": "csv"}],
        "counts": {"read": 10, "predicted": 9, "dead_letter": 1}, "predictions": predictions + "-*.jsonl",
        "stages": [{"stage": "started"}, {"stage": "succeeded"}]},
        predictions + "-00000-of-00001.jsonl", RunLayout(run_dir).dead_letter_file)


def _execution(store, name: str):
    """The one execution of type `name`, and {INPUT: artifact ids, OUTPUT: artifact ids} of its events."""
    types = {t.id: t.name for t in store.get_execution_types()}
    [execution] = [e for e in store.get_executions() if types[e.type_id] == name]
    events = store.get_events_by_execution_ids([execution.id])
    return execution, {kind: {e.artifact_id for e in events if e.type == kind} for kind in (pb.Event.INPUT,
                                                                                            pb.Event.OUTPUT)}


def test_a_prediction_with_a_pushed_model_reads_the_artifact_its_training_run_pushed(tmp_path):
    store = open_store(str(tmp_path / "metadata.sqlite"))
    trained = _run(tmp_path, "trained", "aaa", "2026-01-01T00:00:00+00:00")
    record_run(store, trained)
    predicted = _predicted(tmp_path, "predicted", trained["pushed_model_dir"],
                           pushed_from=RunLayout(trained["run_dir"]).serving_model)
    record_run(store, predicted)
    (_, pushed), (_, validated) = _execution(store, "beam_ml.Push"), _execution(store, "beam_ml.Validate")
    predict, read = _execution(store, "beam_ml.Predict")
    # The PushedModel the training run output and the data file it read: the same artifacts, so the graph joins.
    assert read[pb.Event.INPUT] == pushed[pb.Event.OUTPUT] | validated[pb.Event.INPUT]
    assert len(store.get_artifacts_by_type("beam_ml.Data")) == 1
    assert predict.last_known_state == pb.Execution.COMPLETE

    lineage = model_lineage(store, trained["pushed_model_dir"])
    assert lineage["run"]["run_id"] == "trained" and lineage["earlier_runs"] == []  # a consumer is not upstream
    run_dir = predicted["run_dir"]
    assert lineage["consumers"] == [{
        "run_dir": run_dir, "run_id": "predicted", "job": "batch_predict", "status": "succeeded",
        "started": predicted["started"], "finished": predicted["finished"],
        "outputs": [{"type": "beam_ml.Predictions", "uri": os.path.join(run_dir, "predictions"), "count": 9},
                    {"type": "beam_ml.DeadLetters", "uri": os.path.join(run_dir, "dead_letter"), "count": 1}]}]
    assert [(r["run_id"], r["job"]) for r in run_history(store)] == [("trained", "train_pipeline"),
                                                                     ("predicted", "batch_predict")]


def test_a_prediction_with_a_run_s_model_directory_reads_that_run_s_model(tmp_path):
    store = open_store(str(tmp_path / "metadata.sqlite"))
    trained = _run(tmp_path, "trained", "aaa", "2026-01-01T00:00:00+00:00")
    record_run(store, trained)
    model_dir = RunLayout(trained["run_dir"]).serving_model
    record_run(store, _predicted(tmp_path, "predicted", model_dir))
    [model] = store.get_artifacts_by_type("Model")
    assert model.uri == model_dir and model.id in _execution(store, "beam_ml.Predict")[1][pb.Event.INPUT]
    assert [c["run_id"] for c in model_lineage(store, model_dir)["consumers"]] == ["predicted"]
    assert model_lineage(store, trained["pushed_model_dir"])["consumers"] == []


def test_a_failed_detection_run_is_a_failed_execution_with_the_model_and_the_alerts_it_wrote(tmp_path):
    store = open_store(str(tmp_path / "metadata.sqlite"))
    trained = _run(tmp_path, "trained", "aaa", "2026-01-01T00:00:00+00:00")
    record_run(store, trained)
    run_dir, alerts = str(tmp_path / "detect" / "watch"), str(tmp_path / "alerts")
    detected = _write(run_dir, {
        "job": "detect_anomalies", "run_id": "watch", "run_dir": run_dir, "status": "failed",
        "started": "2026-02-02T00:00:00+00:00", "finished": "2026-02-02T01:00:00+00:00",
        "error": "RuntimeError: the subscription was deleted", "model_dir_at_launch": trained["pushed_model_dir"],
        "pushed_from": RunLayout(trained["run_dir"]).serving_model,
        "config": {"alerts_dir": alerts, "dead_letter_dir": str(tmp_path / "dead")},  # no dead letter written
        "stages": [{"stage": "started"}, {"stage": "failed"}]}, os.path.join(alerts, "alerts-1.jsonl"))
    record_run(store, detected)
    execution, _ = _execution(store, "beam_ml.Detect")
    assert execution.last_known_state == pb.Execution.FAILED
    assert execution.custom_properties["error"].string_value == detected["error"]
    [consumer] = model_lineage(store, trained["pushed_model_dir"])["consumers"]
    assert (consumer["job"], consumer["status"]) == ("detect_anomalies", "failed")
    assert consumer["outputs"] == [{"type": "beam_ml.Alerts", "uri": alerts}]


def test_a_run_that_uses_a_model_goes_to_the_store_of_the_run_that_trained_it_unless_told_otherwise(
        tmp_path, monkeypatch):
    trained = _run(tmp_path, "trained", "aaa", "2026-01-01T00:00:00+00:00")
    model_dir, output_dir = RunLayout(trained["run_dir"]).serving_model, str(tmp_path / "predict")
    training_store = str(tmp_path / "runs" / "metadata.sqlite")  # the training run's default
    assert resolve_store(None, "X", output_dir, model_dir) == training_store
    assert resolve_store(None, "X", output_dir, model_dir + "/") == training_store
    beside = os.path.join(output_dir, "metadata.sqlite")
    assert resolve_store(None, "X", output_dir, None) == beside  # no model: online detectors only
    assert resolve_store(None, "X", output_dir, str(tmp_path / "exported")) == beside  # not a run's model
    assert resolve_store(None, "X", "gs://bucket/predict", None) == "none"  # SQLite needs a local directory
    assert resolve_store("none", "X", output_dir, model_dir) == "none"
    monkeypatch.chdir(tmp_path)
    assert resolve_store("mine.sqlite", "X", output_dir, model_dir) == str(tmp_path / "mine.sqlite")
    with pytest.raises(ConfigError, match="^--metadata_store: "):
        resolve_store("mysql://host/db", "X", output_dir, model_dir)

    (tmp_path / "file").write_text("")  # the training run's own store is checked too
    with open(RunLayout(trained["run_dir"]).manifest, "w") as f:
        json.dump({**trained, "config": {"metadata_store": str(tmp_path / "file" / "m.sqlite")}}, f)
    with pytest.raises(ConfigError, match="^--metadata_store: cannot write"):
        resolve_store(None, "X", output_dir, model_dir)
    with open(RunLayout(trained["run_dir"]).manifest, "w") as f:
        json.dump({**trained, "config": {"metadata_store": "none"}}, f)  # its lineage is off: none to join
    assert resolve_store(None, "X", output_dir, model_dir) == beside

    with open(RunLayout(trained["run_dir"]).manifest, "w") as f:
        json.dump(trained, f)
    record_run_dir(trained["run_dir"])
    predicted = _predicted(tmp_path, "predicted", trained["pushed_model_dir"], pushed_from=model_dir,
                           config={"metadata_store": resolve_store(None, "X", output_dir, model_dir)})
    assert record_run_dir(predicted["run_dir"]) is not None and not os.path.exists(beside)
    store = open_store(training_store)
    assert [c["run_id"] for c in model_lineage(store, trained["pushed_model_dir"])["consumers"]] == ["predicted"]


def test_a_run_is_recorded_whole_in_one_transaction_and_writers_racing_on_a_new_artifact_share_it(tmp_path):
    store = open_store(str(tmp_path / "metadata.sqlite"))
    first = _run(tmp_path, "first", "aaa", "2026-01-01T00:00:00+00:00")
    second = _run(tmp_path, "second", "aaa", "2026-01-02T00:00:00+00:00")  # the same data file

    class LookedBeforeTheFirstCommitted:
        """The second writer as it is when both record at once (MySQL: no lock between them): the first one's
        artifacts are not there yet when it looks them up, and are when it writes."""

        def __init__(self, real):
            self._real = real

        def get_artifacts_by_uri(self, uri):
            return []

        def __getattr__(self, name):
            return getattr(self._real, name)

    record_run(store, first)
    record_run(LookedBeforeTheFirstCommitted(store), second)
    data = store.get_artifacts_by_type("beam_ml.Data")
    assert [a.uri for a in data] == ["/data/penguins.csv"] and data[0].external_id.startswith("beam_ml.Data:")
    runs = {c.name: c.id for c in store.get_contexts_by_type("beam_ml.Run")}
    assert {a.id for a in store.get_artifacts_by_context(runs[second["run_dir"]])} >= {data[0].id}
    # A writer that died between the run's transaction and its link to the pipeline: linked when recorded again.
    store.put_contexts([pb.Context(type_id=store.get_context_type("beam_ml.Run").id, name="/elsewhere/runs/x")])
    orphan = store.get_context_by_type_and_name("beam_ml.Run", "/elsewhere/runs/x")
    assert record_run(store, {**first, "run_dir": "/elsewhere/runs/x"}) == orphan.id
    assert [c.name for c in store.get_parent_contexts_by_context(orphan.id)] == ["/elsewhere/runs"]
    for run_dir, run_id in runs.items():  # every execution of a run in it and in its pipeline's context
        pipeline = store.get_parent_contexts_by_context(run_id)[0]
        assert pipeline.name == str(tmp_path / "runs")
        executions = {e.id for e in store.get_executions_by_context(run_id)}
        assert len(executions) == 5 and executions <= {e.id for e in store.get_executions_by_context(pipeline.id)}


def test_an_input_without_a_fingerprint_is_a_new_artifact_in_every_run(tmp_path):
    store = open_store(str(tmp_path / "metadata.sqlite"))
    for run_id, version in (("a", "v1"), ("b", "v2")):  # the same table, its content changed in between
        record = _run(tmp_path, run_id, "unused", f"2026-01-0{len(run_id)}T00:00:00+00:00")
        record["inputs"] = [{"kind": "bigquery", "bigquery": "p:d.penguins", "sha256": None, "version": version}]
        record_run(store, record)
    data = store.get_artifacts_by_type("beam_ml.Data")
    assert sorted((a.uri, a.custom_properties["version"].string_value, a.external_id) for a in data) == [
        ("p:d.penguins", "v1", ""), ("p:d.penguins", "v2", "")]


def test_a_tuned_run_has_a_tune_step_whose_hyperparameters_the_training_read(tmp_path):
    store = open_store(str(tmp_path / "metadata.sqlite"))
    plain = _run(tmp_path, "plain", "aaa", "2026-01-01T00:00:00+00:00")
    tuned = _run(tmp_path, "tuned", "aaa", "2026-01-02T00:00:00+00:00", stages=[*STAGES[:3], "tuned", *STAGES[3:]])
    best = {"number": 3, "value": 0.97, "params": {"units": 24}}
    tuned["tuning"] = {"study": "penguins", "objective": "val_accuracy", "direction": "maximize", "new_trials": 8,
                       "trials": [best] * 8, "best": best}
    path = RunLayout(tuned["run_dir"]).hyperparameters_file
    os.makedirs(os.path.dirname(path))
    open(path, "w").write(json.dumps({"hyperparameters": {"units": 24}}))
    record_run(store, plain)
    record_run(store, tuned)
    [tune] = store.get_executions_by_type("beam_ml.Tune")  # none for the run without tuning
    assert tune.last_known_state == pb.Execution.COMPLETE
    [hyperparameters] = store.get_artifacts_by_type("HyperParameters")
    assert hyperparameters.uri == path
    properties = {k: v.string_value or v.int_value or v.double_value for k, v in
                  hyperparameters.custom_properties.items()}
    assert properties["study"] == "penguins" and properties["best_trial"] == 3 and properties["trials"] == 8
    assert properties["best_value"] == 0.97 and json.loads(properties["params"]) == {"units": 24}
    events = store.get_events_by_artifact_ids([hyperparameters.id])
    by_kind = {event.type: store.get_executions_by_id([event.execution_id])[0].type_id for event in events}
    types = {t.id: t.name for t in store.get_execution_types()}
    assert {kind: types[type_id] for kind, type_id in by_kind.items()} == {
        pb.Event.OUTPUT: "beam_ml.Tune", pb.Event.INPUT: "beam_ml.Train"}
