"""Caching: the penguin example run again as a user runs it (a fresh process each), unchanged and with one change
at a time.

    python -m benchmarks.caching

Times, in one run on this machine, each job from process start to exit:
  * first: computes everything and pushes;
  * unchanged: reuses the first whole (`cached_from`), pushes nothing;
  * `--no_cache`: computes everything again, judged against the first model (for reference);
  * one more line in the module: takes over the statistics (`reused_stages: validate`), transforms and trains;
  * other hyperparameters: takes over the statistics and the transform, trains;
  * another threshold: takes over the model too and only evaluates it (the model serving: not pushed again).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from beam_ml.report.read import reused_stages
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
    module = os.path.join(work, "penguins_edited.py")
    with open(os.path.join(ROOT, "transforms", "penguins.py")) as f:
        source = f.read()
    with open(module, "w") as f:
        f.write(source + "\nEDITED = True  # one more line\n")
    cases = [("first: computes everything", "first", ()),
             ("unchanged: reuses the first whole", "unchanged", ()),
             ("--no_cache: computes everything", "no_cache", ("--no_cache",)),
             ("one line more in the module", "module_line", ("--module", module)),
             ("other hyperparameters", "hyperparameters", ("--hyperparameters", json.dumps(
                 {"epochs": 10, "steps_per_epoch": 20, "batch_size": 32, "hidden_units": 16, "learning_rate": 0.01}))),
             ("another threshold", "threshold", ("--eval_thresholds",
                                                 json.dumps({"SparseCategoricalAccuracy": {"lower": 0.85}})))]
    results = []
    try:
        for name, run_id, flags in cases:
            results.append((name, *run(work, run_id, *flags)))
        versions = sorted(os.listdir(os.path.join(work, "serving")))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    unchanged = results[1][2]
    assert unchanged.get("cached_from", "").endswith("first") and unchanged["pushed_model_dir"] is None
    print("\n## caching: the penguin example, unchanged and with one change at a time (a fresh process per run)")
    print(environment("DirectRunner (in-process)"))
    print(f"\n| {'run':<36} | {'seconds':>8} | {'vs first':>8} | {'reused':<26} | {'pushed':>6} |")
    print(f"|{'-' * 38}|{'-' * 10}|{'-' * 10}|{'-' * 28}|{'-' * 8}|")
    first_seconds = results[0][1]
    for name, seconds, record in results:
        reused = "the whole run" if record.get("cached_from") else ", ".join(
            stage for stage, _ in reused_stages(record))
        print(f"| {name:<36} | {seconds:8.1f} | {first_seconds / seconds:7.1f}x | {reused or '-':<26} | "
              f"{'yes' if record['pushed_model_dir'] else 'no':>6} |")
    print(f"\nunchanged run {first_seconds / results[1][1]:.1f}x faster than the first; serving versions after all "
          f"runs: {len(versions)} (a computed model is pushed only if blessed against the one serving; a reused "
          f"model that is serving is not pushed again)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
