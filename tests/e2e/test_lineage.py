"""Lineage of real penguin runs: two runs (the second on changed data) recorded by the job in the default SQLite
store, a batch prediction with the pushed model recorded by default in the same store, the README's two questions
answered by `python -m beam_ml.lineage`, and the same store on MariaDB."""
import hashlib
import json
import os
import subprocess
import sys

import pytest

from beam_ml.core.layout import RunLayout
from beam_ml.lineage.queries import model_lineage, run_history
from beam_ml.lineage.store import open_store, record_run
from tests.support.jobs import job_args, run_job
from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, penguins_rows) -> tuple[dict, dict, str]:
    """penguins, then penguins with one body mass changed; returns both run records and the changed file's sha256."""
    base = tmp_path_factory.mktemp("lineage")
    changed = list(penguins_rows)
    changed[5] = changed[5].replace(",3450,", ",3460,")
    assert changed[5] != penguins_rows[5]
    data = base / "changed.csv"
    data.write_text("\n".join(changed) + "\n")
    code, first = run_job(*job_args(base, "first"))
    assert code == 0, first.get("error")
    code, second = run_job(*job_args(base, "second", input=str(data)))
    assert code == 0, second.get("error")
    assert second["pushed_model_dir"], "the second run is pushed too (no new version without a change is issue 17.5)"
    return first, second, hashlib.sha256(data.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def predicted(two_runs) -> dict:
    """A batch prediction on 20 unlabelled penguins with the newest pushed model (the second run's); its record."""
    from jobs.batch_predict import main
    _, second, _ = two_runs
    base = os.path.dirname(os.path.dirname(second["run_dir"]))
    with open(os.path.join(ROOT, "examples", "penguins", "unlabelled", "penguins.csv")) as f:
        rows = f.read().splitlines()[:21]
    data = os.path.join(base, "unlabelled.csv")
    with open(data, "w") as f:
        f.write("\n".join(rows) + "\n")
    output_dir = os.path.join(base, "predict")
    assert main(["--input", data, "--key_column", "penguin_id", "--serving_dir",
                 os.path.dirname(second["pushed_model_dir"]), "--output_dir", output_dir, "--run_id", "predicted"]) == 0
    with open(RunLayout(os.path.join(output_dir, "predicted")).manifest) as f:
        return json.load(f)


def _ask(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "beam_ml.lineage", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_the_job_records_its_runs_and_the_store_answers_what_produced_a_model(two_runs, predicted):
    first, second, changed_sha = two_runs
    store = os.path.join(os.path.dirname(first["run_dir"]), "metadata.sqlite")
    [lineage] = _ask("--store", store, "model", second["pushed_model_dir"])
    assert lineage["run"]["run_dir"] == second["run_dir"] and lineage["run"]["run_id"] == "second"
    assert lineage["run"]["metrics"] == second["metrics"] and lineage["run"]["module"] == "transforms.penguins"
    assert [(d["uri"], d["sha256"]) for d in lineage["data"]] == [(second["inputs"][0]["path"], changed_sha)]
    assert lineage["baseline"] == [first["pushed_model_dir"]] and lineage["earlier_runs"] == [first["run_dir"]]
    runs = _ask("--store", store, "runs")
    assert [(r["run_id"], r["job"], r["status"], r["blessed"], r["pushed_model_dir"]) for r in runs] == [
        ("first", "train_pipeline", "succeeded", True, first["pushed_model_dir"]),
        ("second", "train_pipeline", "succeeded", True, second["pushed_model_dir"]),
        ("predicted", "batch_predict", "succeeded", None, None)]
    assert [r["metrics"] for r in runs] == [first["metrics"], second["metrics"], {}]
    assert runs[0]["data_sha256"] == [first["inputs"][0]["sha256"]] and runs[1]["data_sha256"] == [changed_sha]
    executions = open_store(store).get_executions()
    assert len(executions) == 2 * 5 + 1  # Validate, Transform, Train, Evaluate, Push per training run; Predict


def test_a_prediction_with_the_pushed_model_is_recorded_with_it_and_listed_in_its_lineage(two_runs, predicted):
    first, second, _ = two_runs
    store = os.path.join(os.path.dirname(first["run_dir"]), "metadata.sqlite")  # the model's, not beside predict/
    assert predicted["model_dir"] == second["pushed_model_dir"] and predicted["config"]["metadata_store"] == store
    assert predicted["pushed_from"] == RunLayout(second["run_dir"]).serving_model
    older, newer = _ask("--store", store, "model", first["pushed_model_dir"], second["pushed_model_dir"])
    assert older["consumers"] == []
    [consumer] = newer["consumers"]
    assert {k: consumer[k] for k in ("run_dir", "run_id", "job", "status", "started", "finished")} == {
        k: predicted[k] for k in ("run_dir", "run_id", "job", "status", "started", "finished")}
    assert {o["type"]: (o["uri"], o["count"]) for o in consumer["outputs"]} == {
        "beam_ml.Predictions": (os.path.join(predicted["run_dir"], "predictions"), 20),
        "beam_ml.DeadLetters": (os.path.join(predicted["run_dir"], "dead_letter"), 0)}


def test_the_same_lineage_in_a_mariadb_store(two_runs, predicted, penguin_databases, monkeypatch):
    first, second, changed_sha = two_runs
    server = penguin_databases["mysql"]
    uri = f"mysql://{server.user}@{server.host}:{server.port}/{server.database}"
    monkeypatch.setenv("BEAM_ML_METADATA_PASSWORD", server.password)
    store = open_store(uri, server.password)
    for record in (first, second, predicted):
        record_run(store, record)
    sqlite = open_store(os.path.join(os.path.dirname(first["run_dir"]), "metadata.sqlite"))
    output_dir = os.path.dirname(first["run_dir"])
    assert model_lineage(store, second["pushed_model_dir"]) == model_lineage(sqlite, second["pushed_model_dir"])
    assert run_history(store, output_dir) == run_history(sqlite, output_dir)
    assert _ask("--store", uri, "runs", "--output_dir", output_dir) == run_history(sqlite, output_dir)


def test_a_mysql_store_that_refuses_the_connection_fails_at_launch(tmp_path, penguin_databases, monkeypatch,
                                                                    capsys):
    server = penguin_databases["mysql"]
    monkeypatch.setenv("BEAM_ML_METADATA_PASSWORD", "not-the-password")
    code, _ = run_job(*job_args(tmp_path, "refused", metadata_store=f"mysql://{server.user}@{server.host}:"
                                                                     f"{server.port}/{server.database}"))
    assert code == 2
    assert "--metadata_store: cannot open mysql://" in capsys.readouterr().err
    assert not os.path.exists(RunLayout(str(tmp_path / "runs" / "refused")).manifest)
