"""Both jobs' graphs translate for the DataflowRunner offline (dry run), with zero network calls."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import NETWORK_AUDIT, PENGUINS_CONFIG, ROOT

DATAFLOW_ARGS = ["--runner=DataflowRunner", "--dry_run=True", "--no_auth", "--project=demo-project",
                 "--region=us-central1", "--temp_location=gs://demo-bkt/tmp",
                 "--staging_location=gs://demo-bkt/staging", "--sdk_location=container"]


def _translate(job: str, args: list[str]) -> dict:
    script = (SCRIPT.replace("NETWORK_AUDIT", repr(NETWORK_AUDIT)).replace("ROOT", repr(ROOT))
              .replace("ARGS", repr(args + DATAFLOW_ARGS)).replace("JOB", job))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["state"] == "DONE"
    assert out["network"] == []
    assert any("beam_python3.11_sdk:2.66.0" in image for image in out["images"])
    return out

pytestmark = pytest.mark.e2e

SCRIPT = textwrap.dedent("""
    import json, sys
    exec(NETWORK_AUDIT)  # records every name lookup and TCP connection in `events`
    sys.path.insert(0, ROOT)
    import beam_ml
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from beam_ml.options import BatchPredictOptions, TrainPipelineOptions
    from beam_ml.pipeline import TrainPipeline, plan_run
    from beam_ml.predict import BatchPredict, plan_predict
    options = PipelineOptions(ARGS)
    pipeline = beam.Pipeline(options=options)
    if "JOB" == "train_pipeline":
        _ = pipeline | "TrainPipeline" >> TrainPipeline(plan_run(options.view_as(TrainPipelineOptions).to_config()))
    else:
        _ = pipeline | "BatchPredict" >> BatchPredict(plan_predict(options.view_as(BatchPredictOptions).to_config()))
    result = pipeline.run()
    proto = result.job.proto_pipeline
    transforms = {t.unique_name: t for t in proto.components.transforms.values()}
    envs = proto.components.environments
    train = transforms.get("TrainPipeline/Train/RunFn")
    print(json.dumps({
        "state": str(result.state), "network": events, "transforms": sorted(transforms),
        "train_hints": train and {k: v.decode() for k, v in envs[train.environment_id].resource_hints.items()},
        "images": sorted({e.payload.decode("latin-1") for e in envs.values()}),
    }))
""")


def test_dry_run_translation_has_every_stage_and_no_network(tmp_path):
    out = _translate("train_pipeline", ["--config", PENGUINS_CONFIG, "--output_dir", str(tmp_path / "runs"),
                                        "--serving_dir", str(tmp_path / "serving"), "--temp_dir", str(tmp_path / "tmp"),
                                        "--train_min_ram", "6GB"])
    for stage in ["Ingest/Read/Parse", "Ingest/SplitRows", "Statistics/Generate", "Statistics/WriteTrain", "Statistics/WriteEval",
                  "Validate/InferSchema", "CheckData", "Transform/Analyze", "Transform/TransformEval",
                  "Train/RunFn", "Evaluate/Tfma", "Evaluate/DecideBlessing", "Push", "WriteManifest"]:
        assert f"TrainPipeline/{stage}" in out["transforms"], stage
    assert out["train_hints"] == {"beam:resources:min_ram_bytes:v1": "6000000000"}


def test_batch_predict_dry_run_translation_has_every_stage_and_no_network(tmp_path, launched_penguins):
    bucket, _ = launched_penguins
    out = _translate("batch_predict", ["--input", os.path.join(ROOT, "examples", "penguins", "unlabelled", "*.csv"),
                                       "--key_column", "penguin_id", "--output_dir", str(tmp_path / "runs"),
                                       "--serving_dir", os.path.join(bucket, "serving", "penguins")])
    for stage in ["Ingest/Read/Parse", "Ingest/SplitRows", "ToExamples", "RunInference", "WritePredictions", "WriteDeadLetters",
                  "WriteManifest"]:
        assert any(t.startswith(f"BatchPredict/{stage}") for t in out["transforms"]), stage
