"""Apache Airflow (examples/airflow/continuous_training.py), with real Airflow 3 in its own venv (.venv-airflow, or
$BEAM_ML_AIRFLOW_VENV) on a SQLite metadata database: `dag.test()` runs the local DAG for three daily intervals
over spans of penguin data. The first trains on span 1 and pushes; span 2 lands, and the second trains on span 2
alone, judged against the first model, pushed exactly when blessed; the third finds no new span and skips. The
production DAG renders the launch request the training Flex Template takes (its parameters and their regexes)."""
import csv
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from tests.support.paths import PENGUINS_CONFIG, PENGUINS_CSV, ROOT

pytestmark = pytest.mark.e2e

AIRFLOW_VENV = os.environ.get("BEAM_ML_AIRFLOW_VENV") or os.path.join(ROOT, ".venv-airflow")
DAGS = os.path.join(ROOT, "examples", "airflow")
DAG_FILE = os.path.join(DAGS, "continuous_training.py")
DRIVER = os.path.join(ROOT, "tests", "support", "airflow_dags.py")


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    """Runs the driver in Airflow's venv against a fresh metadata database; returns its JSON answer."""
    home = tmp_path_factory.mktemp("airflow_home")
    python = os.path.join(AIRFLOW_VENV, "bin", "python")
    assert os.path.exists(python), f"no Airflow venv at {AIRFLOW_VENV}: run `make airflow`"
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": DAGS, "PYTHONPATH": ROOT,
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db"}
    migrated = subprocess.run([os.path.join(AIRFLOW_VENV, "bin", "airflow"), "db", "migrate"], env=env,
                              capture_output=True, text=True, timeout=300)
    assert migrated.returncode == 0, migrated.stderr[-3000:]

    def run(*args: str) -> dict:
        proc = subprocess.run([python, DRIVER, *args], env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return run


def _write_span(data_dir, span: int, rows: list[list[str]], header: list[str]) -> None:
    os.makedirs(data_dir / f"span-{span}")
    with open(data_dir / f"span-{span}" / "penguins.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def _records(output_dir) -> list[dict]:
    records = [json.load(open(path)) for path in glob.glob(str(output_dir / "*" / "run_manifest.json"))]
    return sorted(records, key=lambda r: r["started"])


def test_daily_intervals_train_the_newest_span_push_only_when_blessed_and_skip_when_no_span_is_new(airflow,
                                                                                                   tmp_path):
    with open(PENGUINS_CSV) as f:
        header, *rows = list(csv.reader(f))
    data, output_dir, serving_dir = tmp_path / "data", tmp_path / "runs", tmp_path / "serving"
    _write_span(data, 1, rows[0::2], header)  # every other penguin: each span has all species and islands
    conf = {"config": PENGUINS_CONFIG, "input": str(data / "span-{SPAN}" / "*.csv"), "output_dir": str(output_dir),
            "serving_dir": str(serving_dir), "job_python": sys.executable, "workdir": ROOT}

    first = airflow("test", DAG_FILE, "2026-02-01", json.dumps(conf))
    assert first == {"state": "success", "tasks": {"train": "success"}}
    (one,) = _records(output_dir)
    assert one["status"] == "succeeded" and one["span_selection"]["spans"] == [1]
    assert one["counts"]["read"] == len(rows[0::2]) and one["pushed_model_dir"]

    _write_span(data, 2, rows[1::2], header)
    second = airflow("test", DAG_FILE, "2026-02-02", json.dumps(conf))
    assert second == {"state": "success", "tasks": {"train": "success"}}
    two = _records(output_dir)[-1]
    assert two["status"] == "succeeded" and two["span_selection"]["spans"] == [2]
    assert two["counts"]["read"] == len(rows[1::2])  # the new span alone
    assert two["baseline_model"] == one["pushed_model_dir"]  # judged against the model serving
    assert bool(two["pushed_model_dir"]) == two["blessed"]
    versions = sorted(os.path.basename(p) for p in glob.glob(str(serving_dir / "[0-9]*")))
    assert len(versions) == (2 if two["blessed"] else 1)

    third = airflow("test", DAG_FILE, "2026-02-03", json.dumps(conf))
    assert third == {"state": "success", "tasks": {"train": "skipped"}}
    three = _records(output_dir)[-1]
    assert three["cached_from"] == two["run_dir"] and not three["pushed_model_dir"]
    assert sorted(os.path.basename(p) for p in glob.glob(str(serving_dir / "[0-9]*"))) == versions


def test_the_production_dag_renders_the_launch_request_the_flex_template_takes(airflow):
    rendered = airflow("render", DAG_FILE, "2026-02-02")
    with open(os.path.join(ROOT, "templates", "train_pipeline", "launch_request.json")) as f:
        sample = json.load(f)["launchParameter"]
    with open(os.path.join(ROOT, "templates", "train_pipeline", "metadata.json")) as f:
        template = {p["name"]: p for p in json.load(f)["parameters"]}
    launch = rendered["body"]["launchParameter"]
    assert set(launch) == set(sample)
    assert launch["jobName"] == "beam-ml-train-20260202"
    assert re.fullmatch(r"gs://\S+\.json", launch["containerSpecGcsPath"])
    assert set(launch["environment"]) == set(sample["environment"])
    assert launch["parameters"]["spans"] == "latest" and "{SPAN}" in launch["parameters"]["input"]
    for name, value in launch["parameters"].items():
        assert name in template, name
        for regex in template[name].get("regexes", []):
            assert re.match(regex, value), (name, value, regex)
    assert rendered["project"] and rendered["location"]


def test_the_readme_airflow_commands_run_the_local_dag_as_written(tmp_path):
    """From a working directory holding the repository's examples and both venvs, as after `make demo` and
    `make airflow` (which `make test` has run): the local DAG trains the penguin example and pushes it."""
    with open(os.path.join(ROOT, "README.md")) as f:
        section = f.read().split("#### Apache Airflow", 1)[1]
    commands = re.search(r"```\n(.*?)```", section, re.S).group(1).splitlines()
    assert commands[0] == "make airflow" and any("dags test" in c for c in commands), commands
    os.symlink(os.path.join(ROOT, "examples"), tmp_path / "examples")
    os.symlink(sys.prefix, tmp_path / ".venv")
    os.symlink(AIRFLOW_VENV, tmp_path / ".venv-airflow")
    proc = subprocess.run(["bash", "-euc", "\n".join(commands[1:])], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (record,) = _records(tmp_path / "runs" / "penguins")
    assert record["status"] == "succeeded" and record["pushed_model_dir"].startswith(str(tmp_path / "serving"))
