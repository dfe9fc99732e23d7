"""NAB: replays every data file through the streaming detection path, writes NAB results and scores them.

    python -m benchmarks.nab [--data ../shared/data/nab/data] [--windows ../shared/data/nab/combined_windows.json]
                             [--out .bench/nab/results] [--detector contextLikelihood] [--workers N] [--no_priors]

Each `<category>/<file>.csv` under --data is one sensor; its readings go, as the sensor sends them, through
`WindowPerSensor(stride=1)` → `ScoreWindows` (our online detector, one configuration for every file, told what NAB's
detector API tells every detector: the file's value range and probationary period; `--no_priors`: not), and the same
windows through Beam's own `AnomalyDetection(ZScore)`. Results are written as NAB's `<out>/<detector>/<category>/
<detector>_<file>.csv` and scored with `benchmarks.nab.scoring` (NAB's rules) for the standard, reward_low_FP_rate
and reward_low_FN_rate profiles.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import apache_beam as beam

from beam_ml.stream.detectors.context import DetectorConfig
from benchmarks.common import ROOT, environment
from benchmarks.nab.replay import (
    DUPLICATE,
    LATE,
    ZSCORE,
    detect_all,
    discover,
    labels,
    nab_incidents,
    print_categories,
    read_series,
    read_windows,
    result_path,
    score_results,
    with_nab_priors,
    write_result,
)
from benchmarks.nab.scoring import PROFILES

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data", "nab")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(SHARED, "data"), help="folder of <category>/<file>.csv")
    parser.add_argument("--windows", default=os.path.join(SHARED, "combined_windows.json"))
    parser.add_argument("--out", default=os.path.join(ROOT, ".bench", "nab", "results"))
    parser.add_argument("--detector", default=DetectorConfig().name, help="our detector's name in the results")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="replay processes")
    parser.add_argument("--window_length", type=int, default=8, help="WindowPerSensor length (stride is 1)")
    parser.add_argument("--incident_gap", type=float, default=3600.0,
                        help="seconds without an alert that end an incident (alerts: rows at the standard threshold)")
    parser.add_argument("--no_priors", action="store_true",
                        help="do not tell our detector each file's range and probation (NAB's detector API does)")
    args = parser.parse_args(argv)
    if not args.detector or "_" in args.detector:
        parser.error("--detector must be a non-empty name without '_' (NAB's file naming)")

    files = discover(args.data)
    windows = read_windows(args.windows)
    missing = [f.relative for f in files if f.relative not in windows]
    if missing:
        parser.error(f"--windows has no entry for {missing[:3]}")
    series = {f.relative: read_series(f.path) for f in files}
    config = DetectorConfig(name=args.detector)
    if not args.no_priors:
        config = with_nab_priors(config, series)

    start = time.perf_counter()
    replayed = detect_all(files, config, args.workers, args.window_length)
    replay_seconds = time.perf_counter() - start
    rows = sum(len(s.values) for s in series.values())
    for f in files:
        label = labels(series[f.relative], windows[f.relative])
        for detector in (config.name, ZSCORE):
            write_result(result_path(args.out, detector, f), series[f.relative],
                         replayed.scores[detector][f.relative], label)
    table = {d: score_results(args.out, d, files, windows) for d in (config.name, ZSCORE)}
    total_seconds = time.perf_counter() - start

    print(f"\nNAB: {len(files)} files, {rows:,} rows, {sum(len(windows[f.relative]) for f in files)} windows "
          f"({args.data}); results in {args.out}")
    set_apart = {f: counts for f, counts in sorted(replayed.set_apart.items()) if any(counts.values())}
    if set_apart:  # clocks that repeat or go back: as the streaming job would, these readings were set apart
        print("rows set apart (they score 0): " + "; ".join(
            f"{f} {counts[LATE]} late, {counts[DUPLICATE]} duplicate" for f, counts in set_apart.items()))
    print("| detector | " + " | ".join(PROFILES) + " |")
    print("|---|" + "---:|" * len(PROFILES))
    for detector, by_profile in table.items():
        print(f"| {detector} | " + " | ".join(f"{by_profile[p].score:.1f}" for p in PROFILES) + " |")
    print_categories(table)
    for detector, by_profile in table.items():
        precision, recall, made = nab_incidents(files, series, replayed.scores[detector], windows,
                                                by_profile["standard"].threshold, args.incident_gap)
        print(f"{detector}: {made} incidents at the standard threshold (gap {args.incident_gap:g} s), precision "
              f"{precision:.2f}, recall {recall:.2f} of {sum(len(windows[f.relative]) for f in files)} windows")
    print("thresholds: " + "; ".join(f"{d} " + ", ".join(f"{p} {s.threshold:.4f}" for p, s in by_profile.items())
                                     for d, by_profile in table.items()))
    print(f"replay {replay_seconds:.1f} s with {args.workers} worker process(es), total {total_seconds:.1f} s")
    print(f"python {platform.python_version()}, apache-beam {beam.__version__}, {os.cpu_count()} cpus")
    print(environment(f"DirectRunner (streaming, TestStream) × {args.workers} processes"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
