"""Kubeflow Pipelines: the README's commands, run as written with KFP's own venv (.venv-kfp, or $BEAM_ML_KFP_VENV).
The compiled pipeline has the golden structure (tasks, condition, artifact types, images, caching off) and loads
with KFP's own loader; the local run (KFP's local runner: each component in a subprocess, the DirectRunner inside)
trains penguins, pushes and predicts the 344 unlabelled rows, its artifacts where KFP's executor output says; run
again on the same data, the training step reuses the first run, pushes nothing, and prediction is skipped. The
compiled training component also runs as the Flex Template image runs it: its own command, with the image's KFP
executor (kfp 2.13, beside the package) and the package's interpreter as `python3`."""
import glob
import json
import os
import shlex
import subprocess
import sys

import pytest
import yaml

from tests.support.paths import ROOT
from tests.unit.test_readme import readme_commands

pytestmark = pytest.mark.e2e

KFP_VENV = os.environ.get("BEAM_ML_KFP_VENV") or os.path.join(ROOT, ".venv-kfp")
GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "kfp_pipeline.json")


def kfp_python() -> str:
    python = os.path.join(KFP_VENV, "bin", "python")
    assert os.path.exists(python), f"no KFP venv at {KFP_VENV}: run `make kfp`"
    return python


def run_readme_command(command: str, cwd) -> subprocess.CompletedProcess:
    """A README `.venv-kfp/bin/python -m beam_ml.kfp ...` command, as written, from `cwd`."""
    words = shlex.split(command)
    assert words[0] == ".venv-kfp/bin/python", command
    words[0] = kfp_python()
    return subprocess.run(words, cwd=cwd, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
                          timeout=900)


def pipeline_structure(ir: dict) -> dict:
    """What the golden file pins of KFP's pipeline IR: every DAG's tasks (component, upstream tasks, condition,
    caching), every component's typed inputs and outputs, and how each executor starts."""
    def dag(spec: dict) -> dict:
        return {name: {"component": task["componentRef"]["name"], "after": sorted(task.get("dependentTasks", [])),
                       "condition": task.get("triggerPolicy", {}).get("condition"),
                       "cache": task.get("cachingOptions", {}).get("enableCache", False),
                       "artifacts_from": {key: value.get("taskOutputArtifact") or value.get("componentInputArtifact")
                                          for key, value in task.get("inputs", {}).get("artifacts", {}).items()}}
                for name, task in spec["dag"]["tasks"].items()} if "dag" in spec else None

    def typed(definitions: dict) -> dict:
        return {**{name: p["parameterType"] for name, p in definitions.get("parameters", {}).items()},
                **{name: a["artifactType"]["schemaTitle"] for name, a in definitions.get("artifacts", {}).items()}}

    return {
        "name": ir["pipelineInfo"]["name"],
        "root": {"inputs": typed(ir["root"]["inputDefinitions"]), "dag": dag(ir["root"])},
        "components": {name: {"inputs": typed(spec.get("inputDefinitions", {})),
                              "outputs": typed(spec.get("outputDefinitions", {})), "dag": dag(spec)}
                       for name, spec in ir["components"].items()},
        "executors": {name: {"image": spec["container"]["image"],
                             "entry": "python3 -m kfp.dsl.executor_main" in " ".join(spec["container"]["command"]),
                             "installs_packages": "pip install" in " ".join(spec["container"]["command"]),
                             "runs_step": "beam_ml.launch.step" in " ".join(spec["container"]["command"])}
                      for name, spec in ir["deploymentSpec"]["executors"].items()},
    }


@pytest.fixture(scope="module")
def kfp_commands() -> dict[str, str]:
    commands = {c.split()[3]: c for c in readme_commands() if c.startswith(".venv-kfp/bin/python -m beam_ml.kfp ")}
    assert set(commands) == {"compile", "run"}, commands
    return commands


def test_the_readme_compile_command_writes_the_golden_pipeline_that_kfp_loads(kfp_commands, tmp_path):
    proc = run_readme_command(kfp_commands["compile"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = tmp_path / "continuous_training.yaml"
    with open(path) as f:
        structure = pipeline_structure(yaml.safe_load(f))
    with open(GOLDEN) as f:
        assert structure == json.load(f)
    loaded = subprocess.run(
        [kfp_python(), "-c", "import sys; from kfp import components; c = components.load_component_from_file("
                             "sys.argv[1]); print(c.name, sorted(c.component_spec.inputs))", str(path)],
        capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split() == ["beam-ml-continuous-training", "['output_dir',", "'predict_config',",
                                     "'predict_flags',", "'predict_output_dir',", "'serving_dir',",
                                     "'train_config',", "'train_flags']"]


def _pipeline_runs(tmp_path) -> list[str]:
    return sorted(glob.glob(str(tmp_path / "runs" / "kfp" / "beam-ml-continuous-training-*")))


def _task_outputs(pipeline_dir: str, task: str) -> dict:
    with open(os.path.join(pipeline_dir, task, "executor_output.json")) as f:
        return json.load(f)


def test_the_readme_local_run_trains_pushes_predicts_and_a_rerun_on_the_same_data_skips_prediction(kfp_commands,
                                                                                                tmp_path):
    os.symlink(os.path.join(ROOT, "examples"), tmp_path / "examples")
    os.symlink(sys.prefix, tmp_path / ".venv")  # the README's `.venv/bin/python`, which runs the jobs
    first = run_readme_command(kfp_commands["run"], tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    (pipeline_dir,) = _pipeline_runs(tmp_path)
    train = _task_outputs(pipeline_dir, "train-job")
    assert train["parameterValues"] == {"Output": True}
    (model,) = train["artifacts"]["model"]["artifacts"]
    assert os.path.exists(os.path.join(model["uri"], "saved_model.pb"))
    assert os.path.exists(os.path.join(model["uri"], "assets.extra", "tf_serving_warmup_requests"))
    assert model["metadata"]["blessed"] is True and model["metadata"]["reused_run"] == ""
    pushed = model["metadata"]["pushed_model_dir"]
    assert os.path.dirname(pushed) == str(tmp_path / "serving" / "penguins")
    (evaluation,) = train["artifacts"]["evaluation"]["artifacts"]
    assert evaluation["metadata"]["sparse_categorical_accuracy"] >= 0.9
    (record_artifact,) = train["artifacts"]["run_record"]["artifacts"]
    with open(record_artifact["uri"]) as f:
        record = json.load(f)
    assert record["status"] == "succeeded" and record["pushed_model_dir"] == pushed
    assert record["run_dir"] == record_artifact["metadata"]["run_dir"]
    predict = _task_outputs(pipeline_dir, "predict-job")
    assert predict["parameterValues"] == {"Output": 344}
    (predict_record,) = predict["artifacts"]["run_record"]["artifacts"]
    with open(predict_record["uri"]) as f:
        predicted = json.load(f)
    assert predicted["status"] == "succeeded" and predicted["counts"]["predicted"] == 344
    assert predicted["model_dir"] == model["uri"]  # the artifact KFP handed over, not the serving dir
    assert f"predict: 344 rows, run {predicted['run_dir']}" in first.stdout

    second = run_readme_command(kfp_commands["run"], tmp_path)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    pipeline_dir = _pipeline_runs(tmp_path)[-1]
    train = _task_outputs(pipeline_dir, "train-job")
    assert train["parameterValues"] == {"Output": False}
    (model,) = train["artifacts"]["model"]["artifacts"]
    assert model["metadata"]["reused_run"] == record["run_dir"] and model["metadata"]["pushed_model_dir"] == ""
    assert os.path.exists(os.path.join(model["uri"], "saved_model.pb"))
    assert not os.path.exists(os.path.join(pipeline_dir, "predict-job"))
    assert "predict: skipped (no new model was pushed)" in second.stdout
    assert sorted(os.listdir(tmp_path / "serving" / "penguins")) == [os.path.basename(pushed), "models.config"]

    image = run_component_as_the_image_does(kfp_commands, "train-job", tmp_path, {
        "config": "examples/penguins/config.yaml", "output_dir": "runs/penguins", "serving_dir": "serving/penguins",
        "flags": {}})
    assert image["parameterValues"] == {"Output": False}  # the same data and code: the first run, reused
    (model,) = image["artifacts"]["model"]["artifacts"]
    assert model["metadata"]["reused_run"] == record["run_dir"]
    assert os.path.exists(os.path.join(model["uri"], "saved_model.pb"))


def run_component_as_the_image_does(kfp_commands: dict[str, str], task: str, workdir, parameters: dict) -> dict:
    """Runs the compiled component of `task` from `workdir` by its own command and arguments (KFP's executor input
    built as a KFP backend builds it), with the image's executor and the package's interpreter; returns its
    executor output."""
    ir_path = workdir / "image" / "pipeline.yaml"
    os.makedirs(ir_path.parent)
    compile_command = kfp_commands["compile"].replace("--output continuous_training.yaml", f"--output {ir_path}")
    assert run_readme_command(compile_command, workdir).returncode == 0
    with open(ir_path) as f:
        ir = yaml.safe_load(f)
    component = ir["components"][ir["root"]["dag"]["tasks"][task]["componentRef"]["name"]]
    container = ir["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
    out = workdir / "image" / task
    artifacts = {name: {"artifacts": [{"name": name, "type": spec["artifactType"], "uri": str(out / name),
                                       "metadata": {}}]}
                 for name, spec in component["outputDefinitions"].get("artifacts", {}).items()}
    executor_input = {"inputs": {"parameterValues": parameters},
                      "outputs": {"parameters": {name: {"outputFile": str(out / name)}
                                                 for name in component["outputDefinitions"].get("parameters", {})},
                                  "artifacts": artifacts, "outputFile": str(out / "executor_output.json")}}
    bin_dir = workdir / "image" / "bin"  # `python3` is the image's interpreter: the package's, here
    os.makedirs(bin_dir)
    (bin_dir / "python3").write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    os.chmod(bin_dir / "python3", 0o755)
    args = [json.dumps(executor_input) if arg == "{{$}}" else arg for arg in container["args"]]
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([os.path.join(KFP_VENV, "image-executor"), ROOT])}
    proc = subprocess.run(container["command"] + args, cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "executor_output.json") as f:
        return json.load(f)
