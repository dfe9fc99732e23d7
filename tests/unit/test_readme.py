"""The README's commands: every module it runs exists and every make target it names is in the Makefile; the quick
ones (help, --validate_only, the Flex Template commands, dry runs) run exactly as written and succeed."""
import importlib.util
import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.support.paths import ROOT

QUICK = ("--help", "--validate_only", "beam_ml.launch.flex print", "--dry_run")


def readme_commands() -> list[str]:
    """The shell commands of the README's code blocks, continuation lines joined and comments dropped."""
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = re.findall(r"```(?:\w*)\n(.*?)```", f.read(), re.S)
    commands = []
    for block in blocks:
        text = re.sub(r"\\\n\s*", " ", block)
        for line in text.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith((".venv/bin/python -m", ".venv-kfp/bin/python -m", "python -m", "make ")):
                commands.append(line)
    return commands


def test_every_module_and_make_target_the_readme_names_exists():
    commands = readme_commands()
    assert any("jobs.train_pipeline" in c for c in commands) and any(c.startswith("make ") for c in commands)
    with open(os.path.join(ROOT, "Makefile")) as f:
        targets = set(re.findall(r"^([a-z-]+):", f.read(), re.M))
    for command in commands:
        words = shlex.split(command)
        if words[0] == "make":
            assert words[1] in targets, command
        else:
            module = words[words.index("-m") + 1]
            assert importlib.util.find_spec(module) is not None, command


@pytest.mark.parametrize("command", [c for c in readme_commands() if any(q in c for q in QUICK)])
def test_quick_readme_commands_run_as_written(command):
    words = shlex.split(command)
    words[0] = sys.executable  # .venv/bin/python: this venv
    proc = subprocess.run(words, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
