"""Both jobs' graphs translate for the DataflowRunner offline (dry run), with zero network calls."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.support.jobs import NETWORK_AUDIT
from tests.support.paths import PENGUINS_CONFIG, ROOT

DATAFLOW_ARGS = ["--runner=DataflowRunner", "--dry_run=True", "--no_auth", "--project=demo-project",
                 "--region=us-central1", "--temp_location=gs://demo-bkt/tmp",
                 "--staging_location=gs://demo-bkt/staging", "--sdk_location=container"]


def _translate(job: str, args: list[str]) -> dict:
    script = (SCRIPT.replace("NETWORK_AUDIT", repr(NETWORK_AUDIT))
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
    import beam_ml
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from beam_ml.stream.pipeline import DetectAnomalies
    from beam_ml.stream.plan import plan_detect
    from beam_ml.launch.options import BatchPredictOptions, DetectAnomaliesOptions, TrainPipelineOptions
    from beam_ml.train.pipeline import TrainPipeline
    from beam_ml.train.plan import plan_run
    from beam_ml.predict.pipeline import BatchPredict
    from beam_ml.predict.plan import plan_predict
    options = PipelineOptions(ARGS)
    pipeline = beam.Pipeline(options=options)
    if "JOB" == "train_pipeline":
        _ = pipeline | "TrainPipeline" >> TrainPipeline(plan_run(options.view_as(TrainPipelineOptions).to_config()))
    elif "JOB" == "batch_predict":
        _ = pipeline | "BatchPredict" >> BatchPredict(plan_predict(options.view_as(BatchPredictOptions).to_config()))
    else:
        plan = plan_detect(options.view_as(DetectAnomaliesOptions).to_config())
        _ = pipeline | "DetectAnomalies" >> DetectAnomalies(plan)
    result = pipeline.run()
    proto = result.job.proto_pipeline
    transforms = {t.unique_name: t for t in proto.components.transforms.values()}
    envs = proto.components.environments
    train = transforms.get("TrainPipeline/Train/RunFn")
    print(json.dumps({
        "state": str(result.state), "network": events, "transforms": sorted(transforms),
        "job_type": str(result.job.proto.type),
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


def test_a_tuned_run_translates_with_a_step_per_round_of_trials(tmp_path):
    tuning = {"study": "s", "objective": "val_loss", "direction": "minimize", "trials": 6, "parallelism": 4,
              "search_space": {"hidden_units": {"low": 4, "high": 32, "int": True}}}
    out = _translate("train_pipeline", ["--config", PENGUINS_CONFIG, "--output_dir", str(tmp_path / "runs"),
                                        "--serving_dir", str(tmp_path / "serving"), "--tuning", json.dumps(tuning)])
    for stage in ["Ask0", "Spread0", "Trial0", "Save0", "Ask1", "Trial1", "Save1", "Summary"]:
        assert f"TrainPipeline/Tune/{stage}" in out["transforms"], stage
    assert "TrainPipeline/Tune/Trial2" not in out["transforms"]  # 6 trials: rounds of 4 and 2
    assert {"TrainPipeline/TunedHyperparameters", "TrainPipeline/Train/RunFn"} <= set(out["transforms"])


def test_batch_predict_dry_run_translation_has_every_stage_and_no_network(tmp_path, launched_penguins):
    bucket, _ = launched_penguins
    out = _translate("batch_predict", ["--input", os.path.join(ROOT, "examples", "penguins", "unlabelled", "*.csv"),
                                       "--key_column", "penguin_id", "--output_dir", str(tmp_path / "runs"),
                                       "--serving_dir", os.path.join(bucket, "serving", "penguins")])
    for stage in ["Ingest/Read/Parse", "Ingest/SplitRows", "ToExamples", "RunInference", "WritePredictions", "WriteDeadLetters",
                  "WriteManifest"]:
        assert any(t.startswith(f"BatchPredict/{stage}") for t in out["transforms"]), stage


def test_streaming_detection_dry_run_translation_is_a_streaming_job_with_static_step_names(tmp_path,
                                                                                           trained_telemetry):
    def translate(run_id):
        return _translate("detect_anomalies", [
            "--streaming", "--subscription", "projects/demo-project/subscriptions/telemetry",
            "--detector", "model,robust_zscore", "--vote", "majority", "--run_id", run_id,
            "--serving_dir", os.path.dirname(trained_telemetry["pushed_model_dir"]),
            "--output_dir", str(tmp_path / "runs"), "--alerts_topic", "projects/demo-project/topics/alerts",
            "--alerts_dir", "gs://demo-bkt/alerts", "--dead_letter_topic", "projects/demo-project/topics/dead"])

    out = translate("first")
    assert out["job_type"] == "JOB_TYPE_STREAMING"
    for stage in ["ReadTelemetry", "Parse", "Windows/OrderAndWindow", "Score/RunInference",
                  "ScoreOnline/Score", "Vote/Vote", "Alerts", "WriteAlerts", "LateToDeadLetters",
                  "WriteDeadLetters"]:
        assert any(t.startswith(f"DetectAnomalies/{stage}") for t in out["transforms"]), stage
    # Dataflow's --update matches steps by name: a second launch of the same job names every step the same, and
    # every step keeps the name it had before beam_ml was restructured in layers (a promise to running jobs).
    assert translate("second")["transforms"] == out["transforms"]
    _assert_updatable(out["transforms"], GOLDEN_STEPS["ensemble_topic_dir"])


def _assert_updatable(steps: list[str], golden: list[str]) -> None:
    """`--update` accepts a job with new steps, not one that lost or renamed a step: every golden step is still
    there, and each new one is a documented addition."""
    assert not set(golden) - set(steps), "steps lost or renamed"
    assert set(steps) - set(golden) <= ADDED_STEPS


# The streaming job's step names as users' running jobs have them (captured from the release before the package was
# restructured): losing or renaming one breaks `--update` of a running job, so it must be a deliberate, documented
# change. Steps added since, which `--update` accepts:
with open(os.path.join(os.path.dirname(__file__), "golden", "detect_anomalies_steps.json")) as _f:
    GOLDEN_STEPS = json.load(_f)
ADDED_STEPS = {"DetectAnomalies/DuplicatesToDeadLetters"}  # duplicate readings are dead letters (counted, reported)
OTHER_STREAMING_CONFIGS = {
    "model_bigquery_files": ["--alerts_table", "demo-project:mon.alerts", "--dead_letter_dir", "gs://demo-bkt/dead"],
    "online_all_sinks": ["--detector", "zscore,robust_zscore,iqr,context", "--vote", "all", "--channels", "a,b",
                         "--alerts_topic", "projects/demo-project/topics/alerts",
                         "--alerts_table", "demo-project:mon.alerts", "--alerts_dir", "gs://demo-bkt/alerts",
                         "--dead_letter_topic", "projects/demo-project/topics/dead",
                         "--dead_letter_dir", "gs://demo-bkt/dead"],
}


@pytest.mark.parametrize("name", sorted(OTHER_STREAMING_CONFIGS))
def test_streaming_step_names_of_every_sink_and_detector_are_unchanged(name, tmp_path, trained_telemetry):
    serving = ["--serving_dir", os.path.dirname(trained_telemetry["pushed_model_dir"])] \
        if "--channels" not in OTHER_STREAMING_CONFIGS[name] else []
    out = _translate("detect_anomalies", [
        "--streaming", "--subscription", "projects/demo-project/subscriptions/telemetry", "--run_id", name,
        "--output_dir", str(tmp_path / "runs"), *serving, *OTHER_STREAMING_CONFIGS[name]])
    _assert_updatable(out["transforms"], GOLDEN_STEPS[name])
