"""Tuning inside the job: do trials run at the same time, and does a resumed study skip the trials it has?

    python -m benchmarks.tuning [--trials 8] [--parallelism 4] [--workers 4]

The penguin example with a `tuning` option (hidden units and learning rate, `--trials` in rounds of
`--parallelism`), run as a user runs it (a fresh process each) on the multi-process local runner
(`--direct_num_workers`, as Dataflow spreads a round over its workers) and, side by side, in one process. For each:
the job's time, the tuning stage's wall time (first trial's start to last trial's end, from the run record), the
sum of the trials' own times and how many worker processes ran trials. Then the multi-process run's study is resumed
with 4 more trials: which trial numbers the second run trained, and that none of the first run's was repeated.

Speed is measured here, not in tests. Prints a table and the environment.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence

from benchmarks.common import ROOT, environment

SEARCH_SPACE = {"hidden_units": {"low": 2, "high": 32, "int": True},
                "learning_rate": {"low": 0.0003, "high": 0.1, "log": True}}
HYPERPARAMETERS = {"epochs": 5, "steps_per_epoch": 20, "batch_size": 32, "hidden_units": 16, "learning_rate": 0.01}


def run(work: str, run_id: str, trials: int, parallelism: int, flags: Sequence[str]) -> tuple[float, dict]:
    tuning = {"study": "bench", "objective": "val_sparse_categorical_accuracy",
              "trials": trials, "parallelism": parallelism, "search_space": SEARCH_SPACE}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "jobs.train_pipeline", "--config", "examples/penguins/config.yaml",
                           "--output_dir", os.path.join(work, "runs"), "--serving_dir", os.path.join(work, "serving"),
                           "--run_id", run_id, "--tuning", json.dumps(tuning),
                           "--hyperparameters", json.dumps(HYPERPARAMETERS), *flags],
                          cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with open(os.path.join(work, "runs", run_id, "run_manifest.json")) as f:
        return seconds, json.load(f)


def _time(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp).timestamp()


def trial_figures(record: dict) -> dict:
    """This run's trials: their wall time (first start to last end), the sum of their times, the workers."""
    mine = [t for t in record["tuning"]["trials"] if t["run_id"] == record["run_id"]]
    wall = max(_time(t["finished"]) for t in mine) - min(_time(t["started"]) for t in mine)
    return {"trials": [t["number"] for t in mine], "wall": wall, "sum": sum(t["seconds"] for t in mine),
            "workers": len({t["worker"] for t in mine}), "best": record["tuning"]["best"]}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tuning", description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--parallelism", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4, help="direct_num_workers of the multi-process runner")
    args = parser.parse_args(argv)
    multi = ("--direct_num_workers", str(args.workers), "--direct_running_mode", "multi_processing")
    rows = []
    works = []
    for label, flags in ((f"multi-process runner, {args.workers} workers", multi), ("in-process runner", ())):
        work = tempfile.mkdtemp(prefix="bench_tuning_")
        works.append(work)
        seconds, record = run(work, "first", args.trials, args.parallelism, flags)
        rows.append((label, f"{args.trials} new", seconds, trial_figures(record)))
    seconds, resumed = run(works[0], "resumed", args.trials + 4, args.parallelism, multi)
    resumed_figures = trial_figures(resumed)
    rows.append((f"resumed (multi-process), {args.trials + 4} in the study", "4 new", seconds, resumed_figures))

    print(f"{'run':<44} {'trials':>8} {'job s':>7} {'tuning wall s':>14} {'sum of trials s':>16} "
          f"{'overlap':>8} {'workers':>8}  trained")
    for label, trials, job_seconds, figures in rows:
        print(f"{label:<44} {trials:>8} {job_seconds:>7.1f} {figures['wall']:>14.1f} {figures['sum']:>16.1f} "
              f"{figures['sum'] / figures['wall']:>7.2f}x {figures['workers']:>8}  "
              f"{','.join(map(str, figures['trials']))}")
    earlier = set(rows[0][3]["trials"])
    repeated = sorted(earlier & set(resumed_figures["trials"]))
    print(f"\nresumed study: trained trials {resumed_figures['trials']}; repeated from the first run: "
          f"{repeated or 'none'}; study now {len(resumed['tuning']['trials'])} trials, best trial "
          f"{resumed_figures['best']['number']} ({resumed_figures['best']['value']:.4f})")
    print(environment("DirectRunner (FnApiRunner), multi-process and in-process"))
    for work in works:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if not repeated else 1


if __name__ == "__main__":
    sys.exit(main())
