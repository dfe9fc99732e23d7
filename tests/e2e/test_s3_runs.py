"""Runs and models kept on s3://, against a real S3 API server on loopback (moto): training writes its run and pushes
its model there (one of two processes at a time, on the pusher's lock), a second run reuses the first's stages and is
compared with the pushed model, batch prediction serves the newest version from S3, and a rollback makes the first
model the newest version again. The jobs run as the user runs them, as processes: tensorflow-io's S3 client, which
TensorFlow writes with, aborts an interpreter at exit (see beam_ml.core.s3), and the test process never uses it."""
import json
import subprocess
import sys

import pytest

from tests.support.paths import PENGUINS_CONFIG, ROOT

BUCKET = "beam-ml-runs"


def _job(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def _objects(prefix: str) -> dict[str, bytes]:
    """The objects under `prefix` in the bucket, by key relative to it."""
    import boto3
    client = boto3.client("s3")
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
            for o in page.get("Contents", [])]
    return {key[len(prefix):]: client.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys}


def _record(run_id: str) -> dict:
    return json.loads(_objects(f"runs/{run_id}/run_manifest.json")[""])


def _versions(serving: dict[str, bytes]) -> list[str]:
    return sorted({key.split("/")[0] for key in serving if key.split("/")[0].isdigit()})


@pytest.fixture(scope="module")
def trained(s3_server):
    """Two training runs writing to S3: the first pushes, the second (another seed) reuses its statistics and
    transform and is compared with the pushed model."""
    import boto3
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    runs = {}
    for run_id, seed in (("first", "42"), ("second", "7")):
        done = _job("jobs/train_pipeline.py", "--config", PENGUINS_CONFIG, "--output_dir", f"s3://{BUCKET}/runs",
                    "--serving_dir", f"s3://{BUCKET}/serving", "--run_id", run_id, "--seed", seed)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        runs[run_id] = _record(run_id)
    return runs


def test_training_writes_its_run_and_pushes_its_model_to_s3(trained):
    first, second = trained["first"], trained["second"]
    assert first["status"] == "succeeded" and first["counts"]["splits"] == {"train": 243, "eval": 101}
    assert first["blessed"] and first["pushed_model_dir"].startswith(f"s3://{BUCKET}/serving/")
    assert first["run_dir"] == f"s3://{BUCKET}/runs/first"
    run = _objects("runs/first/")
    assert {"model/serving/saved_model.pb", "statistics/Split-train/FeatureStats.pb", "schema/schema.pbtxt",
            "transform/transform_fn/saved_model.pb", "evaluation/BLESSED", "report/index.html"} <= set(run)
    assert set(second["reused_stages"]) >= {"validate", "transform"}
    assert second["baseline_model"] == first["pushed_model_dir"]
    assert second["evaluation_mode"].startswith("value and change thresholds against the baseline")
    serving = _objects("serving/")
    versions = _versions(serving)
    assert len(versions) == 1 + bool(second.get("pushed_model_dir")) and "models.config" in serving
    assert not [key for key in serving if key.startswith(".")]  # no lock, no partial copy left behind
    for version in versions:
        assert f"{version}/saved_model.pb" in serving and f"{version}/variables/variables.index" in serving


def test_batch_prediction_serves_the_newest_version_from_s3(trained):
    done = _job("jobs/batch_predict.py", "--config", "examples/penguins/predict.yaml",
                "--serving_dir", f"s3://{BUCKET}/serving", "--output_dir", f"s3://{BUCKET}/runs",
                "--run_id", "predict", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    record = _record("predict")
    newest = _versions(_objects("serving/"))[-1]
    assert record["model_dir"] == f"s3://{BUCKET}/serving/{newest}"
    assert record["counts"]["predicted"] == 344 and record["counts"]["dead_letter"] == 0
    rows = [json.loads(line) for key, data in _objects("runs/predict/").items() if "predictions" in key
            and not key.endswith("/") for line in data.decode().splitlines() if line.startswith("{")]
    assert len(rows) == 344


def test_rollback_on_s3_makes_the_first_model_the_newest_version(trained):
    before = _versions(_objects("serving/"))
    done = _job("-m", "beam_ml.model.push", "rollback", "--serving_dir", f"s3://{BUCKET}/serving",
                "--to", before[0])
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout)
    serving = _objects("serving/")
    after = _versions(serving)
    assert after[:-1] == before and answer["serving"] == f"s3://{BUCKET}/serving/{after[-1]}"
    assert answer["model_dir"] == f"s3://{BUCKET}/runs/first/model/serving"
    first, newest = (sorted((k[len(v) + 1:], data) for k, data in serving.items() if k.startswith(v + "/")
                            and "beam_ml_push.json" not in k) for v in (before[0], after[-1]))
    assert newest == first  # the same files, byte for byte
    assert not [key for key in serving if key.startswith(".")]
