"""Caching: the penguin example run twice on unchanged data and code, as a user runs it (a fresh process each).

    python -m benchmarks.caching

Times, in one run on this machine, each job from process start to exit: the first run (computes everything and
pushes) and the second (reuses the first: `cached_from`, nothing pushed), and a third with `--no_cache` (computes
everything again, against the first model) for reference.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks.common import ROOT, environment


def run(work: str, run_id: str, *flags: str) -> tuple[float, dict]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "jobs.train_pipeline", "--config", "examples/penguins/config.yaml",
                           "--output_dir", os.path.join(work, "runs"), "--serving_dir", os.path.join(work, "serving"),
                           "--run_id", run_id, *flags], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-2000:]
    with open(os.path.join(work, "runs", run_id, "run_manifest.json")) as f:
        return seconds, json.load(f)


def main() -> int:
    work = tempfile.mkdtemp(prefix="bench_cache_")
    try:
        first_seconds, first = run(work, "first")
        second_seconds, second = run(work, "second")
        third_seconds, third = run(work, "third", "--no_cache")
        versions = sorted(os.listdir(os.path.join(work, "serving")))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert second.get("cached_from", "").endswith("first") and second["pushed_model_dir"] is None
    print("\n## caching: the penguin example, unchanged data and code (a fresh process per run)")
    print(environment("DirectRunner (in-process)"))
    print(f"\n| {'run':<52} | {'seconds':>8} | {'pushed':>7} |")
    print(f"|{'-' * 54}|{'-' * 10}|{'-' * 9}|")
    for name, seconds, record in (("first: computes everything", first_seconds, first),
                                  ("second, unchanged: reuses the first", second_seconds, second),
                                  ("third, --no_cache: computes everything", third_seconds, third)):
        print(f"| {name:<52} | {seconds:8.1f} | {'yes' if record['pushed_model_dir'] else 'no':>7} |")
    print(f"\nsecond run {first_seconds / second_seconds:.1f}x faster than the first; serving versions after all "
          f"three: {len(versions)} (the third's model is pushed only if it is blessed against the first's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
