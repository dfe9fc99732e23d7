"""Shared fixtures. Importing beam_ml first selects Keras 2 (tf_keras) before TensorFlow loads."""
import json
import os
import shutil
import subprocess
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
TELEMETRY_CONFIG = os.path.join(ROOT, "examples", "telemetry", "config.yaml")


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


# Python code for a subprocess script: an audit hook recording every name lookup and TCP connection in `events`.
NETWORK_AUDIT = """
import sys
events = []
def audit(event, args):
    if event in ("socket.getaddrinfo", "socket.connect", "socket.gethostbyname"):
        target = args[1] if event == "socket.connect" else args[0]
        if not (event == "socket.connect" and isinstance(target, str)):  # AF_UNIX is local
            events.append(f"{event} {target}")
sys.addaudithook(audit)
"""

BUCKET = "gs://my-bucket/"


def flex_launch(job: str, bucket_dir: str, **overrides: str) -> subprocess.CompletedProcess:
    """Runs `jobs/<job>.py` the way the Flex Template Python launcher does: the file named by
    FLEX_TEMPLATE_PYTHON_PY_FILE run as a script, the sample launch request's parameters as `--name=value`, from a
    working directory that is not the repository (the package is installed in the container; here PYTHONPATH).
    `gs://my-bucket/` in the request maps to `bucket_dir`; the runner is the DirectRunner."""
    with open(os.path.join(ROOT, "templates", job, "launch_request.json")) as f:
        parameters = {**json.load(f)["launchParameter"]["parameters"], **overrides}
    args = [f"--{name}={value.replace(BUCKET, bucket_dir.rstrip('/') + '/')}" for name, value in parameters.items()]
    env = {**os.environ, "FLEX_TEMPLATE_PYTHON_PY_FILE": os.path.join(ROOT, "jobs", f"{job}.py"),
           "FLEX_TEMPLATE_PYTHON_SETUP_FILE": os.path.join(ROOT, "setup.py")}
    return subprocess.run([sys.executable, env["FLEX_TEMPLATE_PYTHON_PY_FILE"], *args, "--runner=DirectRunner"],
                          cwd=bucket_dir, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def launched_penguins(tmp_path_factory) -> tuple[str, dict]:
    """The penguin example trained and pushed once per session by a launcher-style run of the train job, in a
    local stand-in for the bucket; returns (bucket dir, run manifest)."""
    bucket = tmp_path_factory.mktemp("bucket")
    shutil.copytree(os.path.join(ROOT, "examples", "penguins"), bucket / "examples" / "penguins")
    proc = flex_launch("train_pipeline", str(bucket))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(bucket / "runs" / "penguins" / "launch-1" / "run_manifest.json") as f:
        return str(bucket), json.load(f)


@pytest.fixture(scope="session")
def trained_telemetry(tmp_path_factory) -> dict:
    """The telemetry example (windows, LSTM autoencoder, calibrated threshold) trained and pushed once per session;
    its run manifest (`pushed_model_dir` is the version directory)."""
    code, manifest = run_job(*job_args(tmp_path_factory.mktemp("telemetry"), "telemetry", config=TELEMETRY_CONFIG))
    assert code == 0, manifest.get("error")
    return manifest


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    """The GCS emulator (gcp-storage-emulator) for this session; Beam's gcsio reaches it via STORAGE_EMULATOR_HOST."""
    import emulators
    data = tmp_path_factory.mktemp("gcs")
    process, url, _ = emulators.start_gcs(str(data), str(tmp_path_factory.mktemp("gcs_logs")))
    os.environ["STORAGE_EMULATOR_HOST"] = url
    yield {"url": url, "root": str(data / ".cloudstorage")}
    process.stop()


@pytest.fixture(scope="session")
def bq_emulator(gcs_emulator, tmp_path_factory):
    """bqemulator (REST + Storage Read gRPC) for this session, with the test-only shim applied in this process
    (so only in-process runners reach it)."""
    import emulators
    process, rest, grpc_target, _ = emulators.start_bq(gcs_emulator["root"], str(tmp_path_factory.mktemp("bq_logs")))
    emulators.patch_auth()
    emulators.patch_bigquery(rest, grpc_target)
    emulators.patch_beam_temp_dataset_cleanup()
    emulators.patch_query_destination()
    yield {"rest": rest, "grpc": grpc_target, "project": emulators.PROJECT}
    process.stop()


PENGUIN_DB_COLUMNS = "species, island, bill_length_mm, bill_depth_mm, flipper_length_mm, body_mass_g, sex, year"


@pytest.fixture(scope="session")
def penguin_databases(tmp_path_factory) -> dict:
    """A PostgreSQL and a MariaDB server (tests/databases.py) for this session, each with the bundled penguins in
    table `penguins` (plus an `id` column, 1..344 in file order) and its password in a file."""
    import databases
    from beam_ml.config import PipelineConfig
    from beam_ml.ingest import resolve_files
    _, fmt = resolve_files(PENGUINS_CSV, PipelineConfig.load(PENGUINS_CONFIG, {}).column_types)
    servers = {}
    try:
        for engine, start in (("postgresql", databases.start_postgres), ("mysql", databases.start_mysql)):
            base = tmp_path_factory.mktemp(engine)
            servers[engine] = server = start(str(base))
            databases.load_csv(server, "penguins", PENGUINS_CSV, dict(zip(fmt.columns, fmt.types)))
            (base / "password").write_text(server.password)
            server.password_file = str(base / "password")
        yield servers
    finally:
        for server in servers.values():
            server.stop()


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
