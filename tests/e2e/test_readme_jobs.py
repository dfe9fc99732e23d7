"""The README's batch job commands, run exactly as written, in order, from a fresh working directory holding the
repository's `examples/` (what a new user runs after `make demo`): each succeeds and leaves a succeeded record; then
its report command, through a shell as a user types it, rewrites those runs' reports, and its lineage commands
answer from the store those runs were recorded in (the penguin predictions with the model that made them)."""
import glob
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.support.paths import ROOT
from tests.unit.test_readme import QUICK, readme_commands

pytestmark = pytest.mark.e2e

BATCH_JOBS = ("jobs.train_pipeline", "jobs.batch_predict")


def readme_console_output() -> list[str]:
    """The lines of the README's `text` block that shows what a run prints."""
    with open(os.path.join(ROOT, "README.md")) as f:
        block = re.search(r"```text\n(  started .*?)```", f.read(), re.S)
    assert block, "the README shows a run's console output"
    return block.group(1).splitlines()


def _label(line: str) -> str:
    """What a console line is (its stage, or the summary's first word), without the run's numbers."""
    return line.split(":")[0].split()[0] if line.strip() else ""


def test_the_readme_batch_job_commands_run_as_written(tmp_path):
    commands = [c for c in readme_commands() if any(f"-m {job} " in c for job in BATCH_JOBS)
                and not any(q in c for q in QUICK)]
    assert len(commands) >= 4, commands  # penguins, taxi, telemetry training and the penguins predictions
    os.symlink(os.path.join(ROOT, "examples"), tmp_path / "examples")
    env = {**os.environ, "PYTHONPATH": ROOT}
    for number, command in enumerate(commands):
        words = shlex.split(command)
        words[0] = sys.executable  # .venv/bin/python: this venv
        proc = subprocess.run(words, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (command, proc.stderr[-3000:])
        if number == 0:  # `make demo`'s command: the console output the README shows, on one screen
            printed = proc.stdout.splitlines()
            assert len(printed) <= 40 and proc.stderr == "", proc.stdout + proc.stderr
            assert [_label(line) for line in printed] == [_label(line) for line in readme_console_output()]
        record_line = [line for line in proc.stdout.splitlines() if line.startswith("run record: ")][-1]
        record = json.load(open(os.path.join(tmp_path, record_line.removeprefix("run record: "))))
        assert record["status"] == "succeeded", (command, record.get("error"))
    assert glob.glob(str(tmp_path / "serving" / "penguins" / "*" / "saved_model.pb"))
    for command in [c for c in readme_commands() if "-m beam_ml.report " in c]:
        reports = glob.glob(str(tmp_path / "runs" / "penguins" / "*" / "report" / "index.html"))
        assert reports, "the jobs wrote their reports"
        for path in reports:
            os.remove(path)
        proc = subprocess.run(["bash", "-c", command.replace(".venv/bin/python", shlex.quote(sys.executable), 1)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (command, proc.stderr[-3000:])
        assert sorted(proc.stdout.split()[:-1]) == sorted(reports)
        assert all(os.path.exists(p) for p in reports)
        assert proc.stdout.split()[-1] == str(tmp_path / "runs" / "penguins" / "index.html")
    answers = {}
    for command in [c for c in readme_commands() if "-m beam_ml.lineage " in c]:
        proc = subprocess.run(["bash", "-c", command.replace(".venv/bin/python", shlex.quote(sys.executable), 1)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (command, proc.stderr[-3000:])
        answers["model" if " model " in command else "runs"] = json.loads(proc.stdout)
    [model] = answers["model"]  # the one version the penguins command pushed
    assert model["run"]["status"] == "succeeded" and model["run"]["pushed_model_dir"].rstrip("/") == \
        model["model"].rstrip("/")
    assert model["data"][0]["uri"].endswith("examples/penguins/data/penguins.csv") and model["data"][0]["sha256"]
    [consumer] = model["consumers"]  # the README's penguin predictions, recorded with the model they used
    assert (consumer["job"], consumer["status"]) == ("batch_predict", "succeeded")
    assert [(r["job"], r["status"]) for r in answers["runs"]] == [("train_pipeline", "succeeded"),
                                                                 ("batch_predict", "succeeded")]
    _assert_the_readme_edge_and_browser_exports_work(tmp_path, env)


def _assert_the_readme_edge_and_browser_exports_work(tmp_path, env: dict) -> None:
    """The README's TFLite conversion of the pushed penguin version, its Python snippet on that file, and the
    version's TF.js export."""
    def run_readme_command(module: str) -> dict:
        [command] = [c for c in readme_commands() if f"-m {module} " in c]
        words = shlex.split(command)
        words[0] = sys.executable
        proc = subprocess.run(words, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (command, proc.stderr[-3000:])
        return json.loads(proc.stdout)

    record = run_readme_command("beam_ml.model.lite")
    assert record["within_bound"] is True and record["rows"] == 10  # the version's warm-up rows
    assert [v["file"] for v in record["variants"]] == ["model.tflite", "model_dynamic.tflite"]
    assert all(os.path.exists(os.path.join(tmp_path, record["model_dir"], v["file"])) for v in record["variants"])
    with open(os.path.join(ROOT, "README.md")) as f:
        [snippet] = [b for b in re.findall(r"```python\n(.*?)```", f.read(), re.S) if "tf.lite.Interpreter" in b]
    snippet = re.sub(r'model_path="[^"]+"', f'model_path="{tmp_path / record["model_dir"] / "model.tflite"}"', snippet)
    import numpy as np
    import tensorflow as tf
    namespace = {"np": np, "tf": tf}
    exec(snippet, namespace)  # the README's code as a user pastes it
    assert namespace["scores"].shape == (1, 3) and abs(float(namespace["scores"].sum()) - 1) < 1e-4

    written = run_readme_command("beam_ml.model.tfjs")
    assert written["model_dir"] == record["model_dir"] and {"model.json", "signature.json"} <= set(written["files"])
    assert written["signature"]["classes"] and written["signature"]["inputs"]["year"]["dtype"] == "int32"
