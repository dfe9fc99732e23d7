"""Each job's full Dataflow job request, written offline (staging to a local folder, never submitted), as the
Flex Template launcher would submit it with the image that `templates/Dockerfile` builds."""
import glob
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from beam_ml.launch.flex import image_uri
from tests.support.jobs import NETWORK_AUDIT
from tests.support.paths import PENGUINS_CONFIG, ROOT

pytestmark = pytest.mark.e2e

SCRIPT = textwrap.dedent("""
    import os, sys
    exec(NETWORK_AUDIT)  # records every name lookup and TCP connection in `events`
    import beam_ml
    import tests.support.offline_dataflow  # stage to FAKE_GCS_ROOT, never submit
    from jobs.JOB import main
    code = main(ARGS)
    print("RESULT", code, events)
""")


def _job_request(tmp_path, job: str, args: list[str]) -> tuple[dict, bytes]:
    image = image_uri("demo-project", "us-central1", job)
    args = args + ["--runner=DataflowRunner", "--no_auth", "--project=demo-project", "--region=us-central1",
                   "--temp_location=gs://demo-bkt/tmp", "--staging_location=gs://demo-bkt/staging",
                   f"--sdk_container_image={image}", f"--dataflow_job_file={tmp_path / 'job.json'}"]
    script = (SCRIPT.replace("NETWORK_AUDIT", repr(NETWORK_AUDIT))
              .replace("JOB", job).replace("ARGS", repr(args)))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "FAKE_GCS_ROOT": str(tmp_path / "gcs")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT 0 []" in proc.stdout, proc.stdout[-2000:]  # launched, and not one network call
    with open(tmp_path / "job.json") as f:
        request = json.load(f)
    (pipeline_pb,) = glob.glob(str(tmp_path / "gcs" / "demo-bkt" / "staging" / "*" / "pipeline.pb"))
    with open(pipeline_pb, "rb") as f:
        return request, f.read()


def _check_request(request: dict, job: str) -> None:
    environment = request["environment"]
    assert {"use_runner_v2", "use_portable_job_submission"} <= set(environment["experiments"])
    images = {i["containerImage"] for pool in environment["workerPools"] for i in pool["sdkHarnessContainerImages"]}
    assert images == {image_uri("demo-project", "us-central1", job)}
    options = environment["sdkPipelineOptions"]["options"]
    assert request["type"] == "JOB_TYPE_BATCH"  # neither job is streaming
    assert options["streaming"] is False and options["enable_streaming_engine"] is False


def test_train_job_request(tmp_path):
    from apache_beam.portability.api import beam_runner_api_pb2
    args = ["--config", PENGUINS_CONFIG, "--output_dir", str(tmp_path / "runs"),
            "--serving_dir", str(tmp_path / "serving"), "--temp_dir", str(tmp_path / "tmp"), "--train_min_ram", "6GB"]
    request, pipeline_pb = _job_request(tmp_path, "train_pipeline", args)
    _check_request(request, "train_pipeline")
    pipeline = beam_runner_api_pb2.Pipeline.FromString(pipeline_pb)
    transforms = {t.unique_name: t for t in pipeline.components.transforms.values()}
    train = transforms["TrainPipeline/Train/RunFn"]
    hints = pipeline.components.environments[train.environment_id].resource_hints
    assert hints["beam:resources:min_ram_bytes:v1"] == b"6000000000"


def test_batch_predict_job_request(tmp_path, launched_penguins):
    bucket, _ = launched_penguins
    args = ["--input", os.path.join(ROOT, "examples", "penguins", "unlabelled", "*.csv"), "--key_column", "penguin_id",
            "--serving_dir", os.path.join(bucket, "serving", "penguins"), "--output_dir", str(tmp_path / "runs")]
    request, pipeline_pb = _job_request(tmp_path, "batch_predict", args)
    _check_request(request, "batch_predict")
    assert b"RunInference" in pipeline_pb


def test_the_dockerfile_matches_the_requirements_and_passes_hadolint():
    with open(os.path.join(ROOT, "templates", "Dockerfile")) as f:
        dockerfile = f.read()
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        beam_version = re.search(r"^apache-beam\[[a-z,]+\]==(\S+)$", f.read(), re.M).group(1)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"FROM apache/beam_python{python}_sdk:{beam_version}" in dockerfile
    assert f"python{python.replace('.', '')}-template-launcher-base" in dockerfile
    assert "pip check" in dockerfile and 'ENTRYPOINT ["/opt/apache/beam/boot"]' in dockerfile
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")
    proc = subprocess.run([hadolint, os.path.join(ROOT, "templates", "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
