"""Kubeflow Pipelines (KFP v2): the training job and batch prediction as components, and a continuous-training
pipeline: train on the newest span, then, when a new model was pushed (blessed and servable), predict the
unlabelled rows with it.

    python -m beam_ml.kfp compile --image IMAGE [--output continuous_training.yaml]
    python -m beam_ml.kfp run --train_config CONFIG --predict_config CONFIG [--pipeline_root runs/kfp]

Each component runs one job to its end (`python -m beam_ml.launch.step`) in IMAGE, the job's Flex Template image
(templates/Dockerfile, which has KFP's executor), on the DirectRunner or, through the `flags` parameter
({"runner": "DataflowRunner", "project": ..., "region": ..., "temp_location": ...}), on Dataflow, the step waiting
for the job. The outputs are KFP artifacts, so that Vertex AI Pipelines shows lineage: the model (a copy of the
SavedModel the run trained or reused), the evaluation's overall metrics, and each job's run record. KFP's cache is
off for both tasks: it keys on parameters, not on the data a glob matches; the training job's own cache reuses a
run with the same data, code and config, which pushes nothing, so prediction is skipped.

Submit the compiled YAML to Vertex AI Pipelines (`aiplatform.PipelineJob(template_path=..., pipeline_root="gs://...",
parameter_values={...}).submit()`) or to a Kubeflow cluster; `run` runs it here with KFP's local runner (components
in subprocesses, the jobs with make setup's interpreter). The SDK lives in its own venv, `.venv-kfp` (`make kfp`):
kfp 2.14 and later need a protobuf that Beam 2.66 rejects, and 2.17's local runner is the first to run `dsl.If`.
"""
# (No `from __future__ import annotations` here: KFP reads the components' annotations as types.)
import argparse
import os
import sys
from typing import Optional, Sequence

from kfp import compiler, dsl
from kfp.dsl import Artifact, Input, Metrics, Model, Output

DEFAULT_IMAGE = "europe-west1-docker.pkg.dev/my-project/beam-ml/train_pipeline:latest"
PIPELINE_NAME = "beam-ml-continuous-training"


def train_job(config: str, output_dir: str, serving_dir: str, flags: dict, model: Output[Model],
              evaluation: Output[Metrics], run_record: Output[Artifact]) -> bool:
    """Runs `jobs.train_pipeline` to its end (a KFP component: self-contained, it runs in the image); returns whether
    it pushed a new model. Its artifacts: the model it trained (or reused), the evaluation's overall metrics and
    the run record."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    # The jobs' interpreter: the image's own, or the package venv's where KFP runs in another (local runs).
    python = os.environ.get("BEAM_ML_JOB_PYTHON", sys.executable)
    argv = ["--config", config, "--output_dir", output_dir, "--serving_dir", serving_dir]
    argv += [f"--{name}={value if isinstance(value, str) else json.dumps(value)}" for name, value in flags.items()]
    summary_path = os.path.join(tempfile.mkdtemp(), "summary.json")
    code = subprocess.run([python, "-m", "beam_ml.launch.step", "train_pipeline", "--summary_out", summary_path,
                           "--record_out", run_record.path, "--model_out", model.path, "--", *argv]).returncode
    if not os.path.exists(summary_path):
        raise RuntimeError(f"{python} -m beam_ml.launch.step exited with {code} before saying how the job went")
    with open(summary_path) as f:
        summary = json.load(f)
    run_record.metadata.update({k: summary.get(k) or "" for k in ("run_id", "status", "run_dir")})
    if summary["exit_code"] != 0:
        raise RuntimeError(f"the training job failed ({summary['status']}): {summary['error']}")
    for name, value in summary["metrics"].items():
        evaluation.log_metric(name, value)
    model.metadata.update({"framework": "tensorflow", "blessed": summary["blessed"],
                           "pushed_model_dir": summary["pushed_model_dir"] or "", "run_id": summary["run_id"],
                           "reused_run": summary["reused_run"] or ""})
    return bool(summary["pushed_model_dir"])


def predict_job(config: str, output_dir: str, model: Input[Model], flags: dict,
                run_record: Output[Artifact]) -> int:
    """Runs `jobs.batch_predict` with the model artifact (a KFP component); returns the rows predicted."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    python = os.environ.get("BEAM_ML_JOB_PYTHON", sys.executable)
    argv = ["--config", config, "--output_dir", output_dir, "--model_dir", model.path]
    argv += [f"--{name}={value if isinstance(value, str) else json.dumps(value)}" for name, value in flags.items()]
    summary_path = os.path.join(tempfile.mkdtemp(), "summary.json")
    code = subprocess.run([python, "-m", "beam_ml.launch.step", "batch_predict", "--summary_out", summary_path,
                           "--record_out", run_record.path, "--", *argv]).returncode
    if not os.path.exists(summary_path):
        raise RuntimeError(f"{python} -m beam_ml.launch.step exited with {code} before saying how the job went")
    with open(summary_path) as f:
        summary = json.load(f)
    run_record.metadata.update({k: summary.get(k) or "" for k in ("run_id", "status", "run_dir")})
    if summary["exit_code"] != 0:
        raise RuntimeError(f"batch prediction failed ({summary['status']}): {summary['error']}")
    return summary["predicted"]


def components(image: str) -> tuple:
    """The two components, running in `image` (which has kfp installed: no pip step at run time)."""
    def component(function):
        return dsl.component(function, base_image=image, install_kfp_package=False)
    return component(train_job), component(predict_job)


def continuous_training_pipeline(image: str = DEFAULT_IMAGE):
    """The pipeline function (for `compiler.Compiler().compile` or KFP's local runner)."""
    train, predict = components(image)

    @dsl.pipeline(name=PIPELINE_NAME, description="Train on the newest span; if a new model is pushed, "
                                                   "predict the unlabelled rows with it.")
    def continuous_training(train_config: str, output_dir: str, serving_dir: str, predict_config: str,
                            predict_output_dir: str, train_flags: dict = {}, predict_flags: dict = {}):
        trained = train(config=train_config, output_dir=output_dir, serving_dir=serving_dir, flags=train_flags)
        # KFP's cache keys on parameters, not on the data behind a glob: the job's own cache decides what to redo.
        trained.set_display_name("train, evaluate, push").set_caching_options(False)
        # On the component's single return value: KFP 2.17's local runner never resolves a NamedTuple field here.
        with dsl.If(trained.outputs["Output"] == True, name="pushed"):  # noqa: E712  (a KFP condition)
            predict(config=predict_config, output_dir=predict_output_dir, model=trained.outputs["model"],
                    flags=predict_flags).set_display_name("batch prediction").set_caching_options(False)

    return continuous_training


def compile_pipeline(image: str, path: str) -> str:
    """Writes the pipeline's YAML (KFP's IR) to `path`."""
    compiler.Compiler().compile(continuous_training_pipeline(image), package_path=path)
    return path


def run_local(train_config: str, predict_config: str, pipeline_root: str, job_python: str,
              train_flags: Optional[dict] = None, predict_flags: Optional[dict] = None) -> dict:
    """Runs the pipeline on this machine with KFP's local runner (each component in a subprocess, the jobs on the
    DirectRunner unless the flags say otherwise); the run and output directories are the configs' own. Returns what
    the tasks recorded: {"pipeline_dir", "train": run record, "predict": run record or None (not pushed)}.

        run_local("examples/penguins/config.yaml", "examples/penguins/predict.yaml", "runs/kfp", ".venv/bin/python")
    """
    import glob
    import json
    import os

    import yaml
    from kfp import local

    def config_value(path: str, name: str) -> str:
        with open(path) as f:
            return (yaml.safe_load(f) or {})[name]

    os.environ["BEAM_ML_JOB_PYTHON"] = os.path.abspath(job_python)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root)
    before = set(glob.glob(os.path.join(os.path.abspath(pipeline_root), f"{PIPELINE_NAME}-*")))
    continuous_training_pipeline()(
        train_config=train_config, output_dir=config_value(train_config, "output_dir"),
        serving_dir=config_value(train_config, "serving_dir"), predict_config=predict_config,
        predict_output_dir=config_value(predict_config, "output_dir"), train_flags=train_flags or {},
        predict_flags=predict_flags or {})
    (pipeline_dir,) = set(glob.glob(os.path.join(os.path.abspath(pipeline_root), f"{PIPELINE_NAME}-*"))) - before

    def record(task: str) -> Optional[dict]:
        path = os.path.join(pipeline_dir, task, "run_record")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    return {"pipeline_dir": pipeline_dir, "train": record("train-job"), "predict": record("predict-job")}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m beam_ml.kfp", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    compiling = commands.add_parser("compile", help="write the continuous-training pipeline as KFP YAML")
    compiling.add_argument("--image", default=DEFAULT_IMAGE,
                           help="the jobs' container image (the Flex Template image, templates/Dockerfile)")
    compiling.add_argument("--output", default="continuous_training.yaml")
    running = commands.add_parser("run", help="run the pipeline here with KFP's local runner")
    running.add_argument("--train_config", required=True, help="the training job's config (a local YAML file)")
    running.add_argument("--predict_config", required=True, help="the batch prediction job's config")
    running.add_argument("--pipeline_root", default="runs/kfp", help="where KFP puts the tasks' artifacts")
    running.add_argument("--job_python", default=os.path.join(".venv", "bin", "python"),
                         help="the interpreter with beam_ml installed that runs the jobs (make setup's venv)")
    args = parser.parse_args(argv)
    if args.command == "compile":
        print(compile_pipeline(args.image, args.output))
        return 0
    ran = run_local(args.train_config, args.predict_config, args.pipeline_root, args.job_python)
    train = ran["train"]
    print(f"pipeline run: {ran['pipeline_dir']}")
    print(f"  train:   {train['status']}, run {train['run_dir']}"
          + (f", reused run {train['cached_from']}" if train.get("cached_from") else "")
          + (f", pushed {train['pushed_model_dir']}" if train.get("pushed_model_dir") else ", not pushed"))
    predict = ran["predict"]
    print(f"  predict: {predict['counts']['predicted']} rows, run {predict['run_dir']}" if predict
          else "  predict: skipped (no new model was pushed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
