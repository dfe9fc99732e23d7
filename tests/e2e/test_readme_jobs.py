"""The README's batch job commands, run exactly as written, in order, from a fresh working directory holding the
repository's `examples/` (what a new user runs after `make demo`): each succeeds and leaves a succeeded record; then
its report command, through a shell as a user types it, rewrites those runs' reports."""
import glob
import json
import os
import shlex
import subprocess
import sys

import pytest

from tests.support.paths import ROOT
from tests.unit.test_readme import QUICK, readme_commands

pytestmark = pytest.mark.e2e

BATCH_JOBS = ("jobs.train_pipeline", "jobs.batch_predict")


def test_the_readme_batch_job_commands_run_as_written(tmp_path):
    commands = [c for c in readme_commands() if any(f"-m {job} " in c for job in BATCH_JOBS)
                and not any(q in c for q in QUICK)]
    assert len(commands) >= 4, commands  # penguins, taxi, telemetry training and the penguins predictions
    os.symlink(os.path.join(ROOT, "examples"), tmp_path / "examples")
    env = {**os.environ, "PYTHONPATH": ROOT}
    for command in commands:
        words = shlex.split(command)
        words[0] = sys.executable  # .venv/bin/python: this venv
        proc = subprocess.run(words, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (command, proc.stderr[-3000:])
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
        assert sorted(proc.stdout.split()[:-1]) == sorted(os.path.relpath(p, tmp_path) for p in reports)
        assert all(os.path.exists(p) for p in reports) and proc.stdout.split()[-1] == "runs/penguins/index.html"
