"""Real local emulators for Google Cloud services, started by the tests on free loopback ports, and the test-only
shim that points Beam 2.66's BigQuery IO at them (Beam has no endpoint option for BigQuery). Adapted from
../shared/examples/emulators/ (see ../shared/docs/EMULATORS.md). Never imported by production code.

The emulators live in their own venv (`make emulators`: bqemulator needs protobuf/grpcio versions Beam rejects).
"""
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EMU_VENV = os.environ.get("EMU_VENV", os.path.join(ROOT, ".venv-emu"))
DUCKDB_HOME = os.path.join(EMU_VENV, "duckdb-home")  # DuckDB extensions installed there by `make emulators`
PUBSUB_BIN = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def _wait_http(url, proc, timeout=60, ok=lambda r: r.status == 200):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited early rc={proc.returncode}: {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if ok(r):
                    return time.time() - t0
        except Exception:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)

def _wait_tcp(port, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(port)

class Proc:
    def __init__(self, name, argv, logdir, env=None):
        if not os.path.exists(argv[0]):
            raise RuntimeError(f"{argv[0]} is missing: run `make emulators` (the test venv for the emulators)")
        self.log = open(os.path.join(logdir, f"{name}.log"), "w")
        self.p = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True)       # own process group: the Java emulator forks nothing, but be safe
    def stop(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.log.close()

def start_gcs(data_dir, logdir):
    port = free_port()
    # with Cloud Storage's ifGenerationMatch precondition, which the emulator lacks (see gcs_preconditions.py)
    pr = Proc("gcs", [f"{EMU_VENV}/bin/python", os.path.join(os.path.dirname(__file__), "gcs_preconditions.py"),
                      "-d", data_dir, "start", "--host", "127.0.0.1", "--port", str(port), "-q"], logdir)
    t = _wait_http(f"http://127.0.0.1:{port}/storage/v1/b?project=test-project", pr.p)
    return pr, f"http://127.0.0.1:{port}", t

def start_bq(gcs_root, logdir, home=DUCKDB_HOME):
    rest, grpc_port = free_port(), free_port()
    pr = Proc("bq", [f"{EMU_VENV}/bin/bqemulator", "start", "--rest-port", str(rest), "--grpc-port", str(grpc_port),
                     "--project", "test-project", "--log-level", "warning", "--log-format", "console"], logdir,
              env={"BQEMU_GCS_LOCAL_ROOT": gcs_root, "HOME": home})
    t = _wait_http(f"http://127.0.0.1:{rest}/readyz", pr.p)
    _wait_tcp(grpc_port)
    return pr, f"http://127.0.0.1:{rest}", f"127.0.0.1:{grpc_port}", t

def start_s3(logdir, check_credentials=False):
    """moto's S3 API server on loopback; with `check_credentials`, it refuses every key it has not issued (a denied
    request, as AWS answers an unknown or revoked key)."""
    port = free_port()
    env = {"INITIAL_NO_AUTH_ACTION_COUNT": "0"} if check_credentials else {}
    pr = Proc("s3", [f"{EMU_VENV}/bin/moto_server", "-H", "127.0.0.1", "-p", str(port)], logdir, env=env)
    t = _wait_http(f"http://127.0.0.1:{port}/moto-api/", pr.p)
    return pr, f"http://127.0.0.1:{port}", t


def start_pubsub(logdir):
    if not os.path.exists(PUBSUB_BIN) or not shutil.which("java"):
        return None, None, None
    port = free_port()
    pr = Proc("pubsub", [PUBSUB_BIN, "--host=127.0.0.1", f"--port={port}"], logdir)
    t = _wait_http(f"http://127.0.0.1:{port}/", pr.p)
    return pr, f"127.0.0.1:{port}", t




PROJECT = "test-project"

def patch_auth():
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    def _default(*a, **k):
        return AnonymousCredentials(), PROJECT
    google.auth.default = _default
    import google.auth._default as d
    d.default = _default

def patch_bigquery(rest=os.environ.get("EMU_BQ_REST", "http://127.0.0.1:9050"), grpc_target=os.environ.get("EMU_BQ_GRPC", "127.0.0.1:9060")):
    os.environ["BIGQUERY_EMULATOR_HOST"] = rest            # honoured by google-cloud-bigquery Client
    from apache_beam.io.gcp.internal.clients.bigquery import bigquery_v2_client
    bigquery_v2_client.BigqueryV2.BASE_URL = rest + "/bigquery/v2/"   # apitools client used by Beam
    if grpc_target:
        import apache_beam.io.gcp.bigquery as beam_bq
        import google.cloud.bigquery_storage_v1 as bq_storage
        import grpc
        from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport
        _Orig = bq_storage.BigQueryReadClient
        class EmulatorReadClient(_Orig):
            def __init__(self, *a, **k):
                chan = grpc.insecure_channel(grpc_target, options=[
                    ("grpc.max_receive_message_length", -1)])
                super().__init__(transport=BigQueryReadGrpcTransport(channel=chan))
        beam_bq.bq_storage.BigQueryReadClient = EmulatorReadClient  # same module object

def patch_beam_temp_dataset_cleanup():
    """bqemulator ignores the `filter` (labels.k:v) parameter of datasets.list, so Beam's
    DIRECT_READ cleanup (_clean_up_beam_labelled_temporary_datasets) would delete EVERY dataset
    of the project. Filter client-side on the labels instead."""
    from apache_beam.io.gcp import bigquery_tools
    from apache_beam.io.gcp.internal.clients import bigquery
    W = bigquery_tools.BigQueryWrapper
    orig = W._clean_up_beam_labelled_temporary_datasets
    def safe(self, project_id, dataset_id=None, table_id=None, labels=None):
        if self.is_user_configured_dataset() or labels is None:
            return orig(self, project_id, dataset_id, table_id, labels)
        resp = self.client.datasets.List(bigquery.BigqueryDatasetsListRequest(projectId=project_id))
        for ds in resp.datasets or []:
            have = {p.key: p.value for p in (ds.labels.additionalProperties if ds.labels else [])}
            if labels and all(have.get(k) == v for k, v in labels.items()):
                self._delete_dataset(project_id, ds.datasetReference.datasetId, True)
    W._clean_up_beam_labelled_temporary_datasets = safe

def patch_query_destination():
    """bqemulator 1.4.0 ignores configuration.query.destinationTable for SELECT jobs (results go to
    an anonymous table), but Beam's query reads need the result in its temp table. Rewrite the
    (non-dry-run) query into CREATE TABLE <temp> AS <query>, which the emulator does materialise."""
    from apache_beam.io.gcp import bigquery_tools
    W = bigquery_tools.BigQueryWrapper
    orig = W._start_query_job.__wrapped__ if hasattr(W._start_query_job, "__wrapped__") else W._start_query_job
    def _start_query_job(self, project_id, query, use_legacy_sql, flatten_results, job_id, priority,
                         dry_run=False, kms_key=None, job_labels=None):
        if not dry_run:
            t = self._get_temp_table(project_id)
            query = f"CREATE TABLE `{t.projectId or project_id}.{t.datasetId}.{t.tableId}` AS {query}"
        return orig(self, project_id, query, use_legacy_sql, flatten_results, job_id, priority,
                    dry_run, kms_key, job_labels)
    W._start_query_job = _start_query_job

def patch_gcs(host="http://127.0.0.1:9023"):
    # google-cloud-storage (used by Beam 2.66 gcsio) honours STORAGE_EMULATOR_HOST
    os.environ["STORAGE_EMULATOR_HOST"] = host

def ensure_bucket(name, host="http://127.0.0.1:9023"):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    os.environ["STORAGE_EMULATOR_HOST"] = host
    c = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
    if c.lookup_bucket(name) is None:
        c.create_bucket(name)
