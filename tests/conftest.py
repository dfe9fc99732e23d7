"""Shared fixtures. Importing beam_ml first selects Keras 2 (tf_keras) before TensorFlow loads."""
import json
import os
import shutil
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# Worker processes (multi-processing DirectRunner) import the project too.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))

import beam_ml  # noqa: E402,F401

SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
PENGUINS_CSV = os.path.join(ROOT, "examples", "penguins", "data", "penguins.csv")
PENGUINS_CONFIG = os.path.join(ROOT, "examples", "penguins", "config.yaml")
TAXI_CONFIG = os.path.join(ROOT, "examples", "taxi", "config.yaml")


def run_job(*args: str) -> tuple[int, dict]:
    """Runs jobs.train_pipeline in-process; returns its exit code and the run manifest (if one was written)."""
    from jobs.train_pipeline import main
    argv = list(args)
    code = main(argv)
    out = dict(zip(argv[::2], argv[1::2]))
    manifest_path = os.path.join(out["--output_dir"], out["--run_id"], "run_manifest.json")
    manifest = json.load(open(manifest_path)) if os.path.exists(manifest_path) else {}
    return code, manifest


def job_args(tmp_path, run_id: str, config: str = PENGUINS_CONFIG, **overrides: str) -> list[str]:
    args = ["--config", config, "--output_dir", str(tmp_path / "runs"), "--serving_dir", str(tmp_path / "serving"),
            "--run_id", run_id]
    for name, value in overrides.items():
        args += [f"--{name}", str(value)]
    return args


@pytest.fixture(scope="session")
def penguins_rows() -> list[str]:
    with open(PENGUINS_CSV) as f:
        return f.read().splitlines()


@pytest.fixture
def workdir(tmp_path):
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


_EXIT_STATUS = 0


def pytest_sessionfinish(session, exitstatus):
    global _EXIT_STATUS
    _EXIT_STATUS = int(exitstatus)


def pytest_unconfigure(config):
    """End the process right after pytest's summary: at interpreter teardown TensorFlow's function finalizers
    print spurious 'Exception ignored' tracebacks, which would bury the summary line."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS)
