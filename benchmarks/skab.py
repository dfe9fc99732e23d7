"""SKAB: multivariate outlier detection through the streaming path, scored as the Skoltech Anomaly Benchmark's
leaderboard scores it.

    python -m benchmarks.skab [--data ../shared/data/skab] [--workers 2]

Every `<folder>/<n>.csv` under --data that has labels (`anomaly`, `changepoint`; `;`-separated, 8 channels at 1 Hz) is
one machine. Its readings are replayed as the machine sends them (`benchmarks.nab.replay`: a TestStream, one key
per file) through the streaming job's own transforms: `WindowPerSensor(length=1)` → `ScoreWindows(PcaSpec())`, the
PCA T²+Q detector (`beam_ml.stream.detectors.pca`), which fits on each file's first 400 readings as SKAB's protocol
says and then scores online. A reading alerts when its score reaches the detector's threshold (1). Over the scored
rows of all files (those after the first 400): F1 of the `anomaly` label, FAR (% of normal rows flagged) and MAR (%
of anomalous rows missed), next to the leaderboard's published numbers (all 34 files of SKAB). The changepoint
problem is scored as SKAB scores it, with NAB's rules (`benchmarks.nab.scoring`, its three profiles) on windows of
`--changepoint_window` seconds after each `changepoint` (overlapping windows merged); as in SKAB's baselines, the
detected changepoints are the rows where the alert series changes (an alert starts or ends). Incidents, as the
streaming job groups alerts (`beam_ml.stream.incidents.IncidentTracker`, `--incident_gap` seconds), are counted too:
their precision (incidents that overlap a labelled fault) and recall (faults that got an incident).

A file without labels (SKAB's anomaly-free run, 2.6 hours) is replayed too, and all its rows after the first 400 are
normal: F1, FAR and MAR are printed for the files with faults alone (the leaderboard's protocol) and with it added
(there a detector must also stay quiet while the machine slowly drifts). Its incidents are counted as false ones.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from typing import Sequence

import numpy as np

from beam_ml.stream.detectors.pca import PcaSpec
from benchmarks.common import ROOT, environment
from benchmarks.incidents import fault_segments, incident_metrics, incidents
from benchmarks.nab.replay import DataFile, Series, detect_all, unix_seconds
from benchmarks.nab.scoring import PROFILES, label_file, normalised, sweep

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data", "skab")
LABELS = ("anomaly", "changepoint")
# The outlier leaderboard as ../shared/data/README.md quotes it (all 34 files of SKAB): detector → (F1, FAR %, MAR %),
# None where it gives no figure.
PUBLISHED = {"Conv-AE": (0.78, 13.6, 28.0), "MSET": (0.78, None, None), "PCA T²+Q": (0.76, None, None),
             "LSTM-AE": (0.74, None, None), "T-squared": (0.66, None, None), "Isolation forest": (0.29, None, None)}
PUBLISHED_CHANGEPOINT = 32.4  # the best standard NAB score on SKAB's changepoints (MSCRED), as the README quotes


def read_skab(path: str) -> tuple[Series, np.ndarray, np.ndarray]:
    """A SKAB file: its readings as a multivariate `Series`, its `anomaly` labels (0/1 per row) and the rows of its
    changepoints. A file without the label columns (the anomaly-free run) is normal throughout."""
    with open(path) as f:
        header = f.readline().strip().split(";")
        rows = [line.strip().split(";") for line in f if line.strip()]
    labelled = set(LABELS) <= set(header)
    if header[0] != "datetime" or (set(LABELS) & set(header) and not labelled):
        raise ValueError(f"{path}: header {header} lacks datetime or one of the labels {LABELS}")
    channels = [i for i, name in enumerate(header) if name not in ("datetime", *LABELS)]
    timestamps = tuple(row[0] for row in rows)
    values = np.array([[float(row[i]) for i in channels] for row in rows])
    anomaly, changepoints = np.zeros(len(rows), dtype=int), np.empty(0, dtype=int)
    if labelled:
        anomaly = np.array([float(row[header.index("anomaly")]) for row in rows]).astype(int)
        changepoints = np.flatnonzero([float(row[header.index("changepoint")]) for row in rows])
    return Series(timestamps, np.array([unix_seconds(t) for t in timestamps]), values), anomaly, changepoints


def skab_files(data_dir: str) -> tuple[list[DataFile], list[DataFile]]:
    """The `<folder>/<n>.csv` files under `data_dir`: (those with fault labels, those without: normal runs)."""
    labelled, normal = [], []
    for path in sorted(glob.glob(os.path.join(data_dir, "*", "*.csv"))):
        with open(path) as f:
            kind = labelled if "anomaly" in f.readline() else normal
        kind.append(DataFile(os.path.basename(os.path.dirname(path)), os.path.basename(path), path))
    if not labelled:
        raise ValueError(f"no labelled <folder>/<n>.csv under {data_dir}")
    return labelled, normal


def outlier_metrics(labels: Sequence[np.ndarray], alerts: Sequence[np.ndarray]) -> tuple[float, float, float]:
    """(F1, FAR %, MAR %) over all rows of all files, as SKAB's leaderboard computes them."""
    y, p = np.concatenate(labels).astype(bool), np.concatenate(alerts).astype(bool)
    tp, fp, fn = int((y & p).sum()), int((~y & p).sum()), int((y & ~p).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return f1, 100.0 * fp / max(int((~y).sum()), 1), 100.0 * fn / max(int(y.sum()), 1)


def changepoint_windows(times: np.ndarray, changepoints: Sequence[int], seconds: float
                        ) -> list[tuple[np.datetime64, np.datetime64]]:
    """[start, start + seconds] after each changepoint row, overlapping ones merged."""
    merged: list[list[np.datetime64]] = []
    for row in sorted(changepoints):
        start, end = times[row], times[row] + np.timedelta64(int(seconds), "s")
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def alert_edges(alerts: np.ndarray) -> np.ndarray:
    """1.0 where an alert series changes (an alert starts or ends), else 0.0: the detected changepoints."""
    return np.abs(np.diff(alerts.astype(float), prepend=0.0))


def changepoint_scores(files: Sequence[tuple[str, np.ndarray, Sequence[tuple], np.ndarray]]) -> dict[str, float]:
    """NAB's normalised score per profile for (name, times, windows, detected changepoints 0/1) of each file."""
    out = {}
    for name, profile in PROFILES.items():
        pairs = []
        for relative, times, windows, scores in files:
            labelled, scorable = label_file(relative, times, windows, profile)
            pairs.append((labelled, scores[scorable]))
        _, raw = sweep(pairs, profile)
        out[name] = normalised(raw, [labelled for labelled, _ in pairs], profile)
    return out


def skab_series(path: str) -> Series:
    return read_skab(path)[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=SHARED, help="folder of <folder>/<n>.csv SKAB files")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="replay processes")
    parser.add_argument("--changepoint_window", type=float, default=60.0, help="seconds after each changepoint")
    parser.add_argument("--incident_gap", type=float, default=60.0,
                        help="seconds without an alert that end an incident")
    args = parser.parse_args(argv)
    files, normal = skab_files(args.data)
    spec = PcaSpec()

    start = time.perf_counter()
    scores = detect_all(files + normal, spec, args.workers, window_length=1, chunk=100, reader=skab_series,
                        zscore=False).scores[spec.name]
    seconds = time.perf_counter() - start
    labels, alerts, rows, changepoint_files, incident_files = [], [], 0, [], []
    for f in files + normal:
        series, anomaly, changepoints = read_skab(f.path)
        rows += len(anomaly)
        labels.append(anomaly[spec.fit_readings:])
        alerts.append(scores[f.relative][spec.fit_readings:] >= 1.0)
        scored = slice(spec.fit_readings, None)
        found = incidents(series.seconds[scored], scores[f.relative][scored] >= 1.0, args.incident_gap)
        incident_files.append((found, fault_segments(series.seconds[scored], anomaly[scored])))
        if f in files:
            times = np.array([np.datetime64(t.replace(" ", "T"), "s") for t in series.timestamps])
            changepoint_files.append((f.relative, times, changepoint_windows(times, changepoints,
                                                                             args.changepoint_window),
                                      alert_edges(scores[f.relative] >= 1.0)))
    faulty = slice(0, len(files))
    nab = changepoint_scores(changepoint_files)
    precision, recall, made = incident_metrics(incident_files[faulty])

    print(f"\nSKAB outliers: {len(files)} files with faults and {len(normal)} without, {rows:,} rows "
          f"({sum(len(a) for a in labels):,} scored after the first {spec.fit_readings} of each), {args.data}")
    print("| detector | F1 | FAR % | MAR % | files |")
    print("|---|---:|---:|---:|---|")
    rows_of = [(f"these {len(files)}", faulty)]
    if normal:
        rows_of.append((f"these {len(files)} + {', '.join(f.relative for f in normal)}", slice(None)))
    for label, kept in rows_of:
        f1, far, mar = outlier_metrics(labels[kept], alerts[kept])
        print(f"| beam_ml PCA T²+Q (streaming, {spec.name}) | {f1:.3f} | {far:.2f} | {mar:.2f} | {label} |")
    for name, figures in PUBLISHED.items():
        print(f"| {name} (published) | " + " | ".join("—" if x is None else f"{x:g}" for x in figures)
              + " | SKAB's 34 |")
    false_incidents = "".join(f"; {f.relative}: {len(found)}, all false"
                              for f, (found, _) in zip(normal, incident_files[faulty.stop:]))
    print(f"incidents (gap {args.incident_gap:g} s): {made}, precision {precision:.2f}, recall {recall:.2f} "
          f"({sum(len(faults) for _, faults in incident_files[faulty])} faults){false_incidents}")
    print(f"\nSKAB changepoints (NAB's rules, {args.changepoint_window:g} s windows after each changepoint):")
    print("| detector | " + " | ".join(PROFILES) + " |")
    print("|---|" + "---:|" * len(PROFILES))
    print(f"| beam_ml PCA T²+Q (streaming, {spec.name}) | " + " | ".join(f"{nab[p]:.1f}" for p in PROFILES) + " |")
    print(f"| MSCRED (published, best standard) | {PUBLISHED_CHANGEPOINT:g} | — | — |")
    print(f"replay {seconds:.1f} s with {args.workers} worker process(es)")
    print(environment(f"DirectRunner (streaming, TestStream) × {args.workers} processes"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
