"""The pytest plugin of the suite: session fixtures (a trained penguin and telemetry model, the emulators, the
database servers), markers, and a clean exit.

Markers, set from what a test uses so that none is forgotten:
  * `server`: starts a real server (a database, an emulator); `model`: trains a model or needs a trained one;
    `e2e`: a test under tests/e2e (whole jobs on real data).
`make test-fast` runs tests/unit without `server` and `model` tests; `make test` runs everything.
"""
import json
import os
import shutil
import sys

import pytest

import beam_ml  # noqa: E402,F401  (selects Keras 2, tf_keras, before TensorFlow loads)
from tests.support.jobs import flex_launch, job_args, run_job
from tests.support.paths import PENGUINS_CONFIG, PENGUINS_CSV, ROOT, TELEMETRY_CONFIG
from tests.support.pubsub import direct_runner_metrics, pubsub_emulator  # noqa: F401  (fixtures)

# Worker processes (the multi-processing DirectRunner, the Flex launcher's subprocess) import the tests' modules too.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))

SERVER_FIXTURES = {"gcs_emulator", "s3_server", "bq_emulator", "pubsub_emulator", "penguin_databases", "penguin_db"}
MODEL_FIXTURES = {"launched_penguins", "trained_telemetry"}


def pytest_configure(config):
    config.addinivalue_line("markers", "server: starts a real server (a database or an emulator)")
    config.addinivalue_line("markers", "model: trains a model, or needs one trained")
    config.addinivalue_line("markers", "e2e: end-to-end runs of whole jobs on real data (tests/e2e)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & SERVER_FIXTURES:
            item.add_marker(pytest.mark.server)
        if used & MODEL_FIXTURES:
            item.add_marker(pytest.mark.model)
        if "tests/e2e/" in item.nodeid or item.nodeid.startswith("e2e/"):
            item.add_marker(pytest.mark.e2e)


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
    from tests.support import emulators
    data = tmp_path_factory.mktemp("gcs")
    process, url, _ = emulators.start_gcs(str(data), str(tmp_path_factory.mktemp("gcs_logs")))
    os.environ["STORAGE_EMULATOR_HOST"] = url
    yield {"url": url, "root": str(data / ".cloudstorage")}
    process.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """An S3 API server (moto) for this session, reached through AWS's standard environment (endpoint, keys,
    region), as boto3 and so Beam's S3 filesystem read it; jobs started as subprocesses inherit it."""
    from tests.support import emulators
    process, url, _ = emulators.start_s3(str(tmp_path_factory.mktemp("s3_logs")))
    aws = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "beam-ml-test-key", "AWS_SECRET_ACCESS_KEY": "beam-ml-test-secret",
           "AWS_DEFAULT_REGION": "us-east-1"}
    before = {name: os.environ.get(name) for name in aws}
    os.environ.update(aws)
    yield {"url": url, **aws}
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    process.stop()


@pytest.fixture(scope="session")
def bq_emulator(gcs_emulator, tmp_path_factory):
    """bqemulator (REST + Storage Read gRPC) for this session, with the test-only shim applied in this process
    (so only in-process runners reach it)."""
    from tests.support import emulators
    process, rest, grpc_target, _ = emulators.start_bq(gcs_emulator["root"], str(tmp_path_factory.mktemp("bq_logs")))
    emulators.patch_auth()
    emulators.patch_bigquery(rest, grpc_target)
    emulators.patch_beam_temp_dataset_cleanup()
    emulators.patch_query_destination()
    yield {"rest": rest, "grpc": grpc_target, "project": emulators.PROJECT}
    process.stop()


@pytest.fixture(scope="session")
def penguin_databases(tmp_path_factory) -> dict:
    """A PostgreSQL and a MariaDB server (tests/databases.py) for this session, each with the bundled penguins in
    table `penguins` (plus an `id` column, 1..344 in file order) and its password in a file."""
    from beam_ml.config.train import PipelineConfig
    from beam_ml.ingest.files.source import resolve_files
    from tests.support import databases
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
