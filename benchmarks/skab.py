"""SKAB: multivariate outlier detection through the streaming path, scored as the Skoltech Anomaly Benchmark's
leaderboard scores it.

    python -m benchmarks.skab [--data ../shared/data/skab] [--detectors pca lstm_ae context] [--workers 2]

Every `<folder>/<n>.csv` under --data that has labels (`anomaly`, `changepoint`; `;`-separated, 8 channels at 1 Hz) is
one machine. Each detector is fitted on each file's first 400 rows, as SKAB's protocol says, and scores the rest
online, the file's readings replayed as the machine sends them (`benchmarks.nab.replay`: a TestStream, one key per
file) through the streaming job's own transforms, `WindowPerSensor` and then:
  * `pca`: `ScoreWindows(PcaSpec())`, the online PCA T²+Q detector (`beam_ml.stream.detectors.pca`), windows of one
    reading; it fits on the first 400 readings itself;
  * `context`: `ScoreWindows(DetectorConfig())`, the online detector NAB's benchmark runs, each channel on its own
    and the reading's score their highest; its anomaly likelihood learns over the first 400 readings;
  * `lstm_ae`: `ScoreWithModel` (RunInference), the window model the batch pipeline trains: per file, a
    `jobs.train_pipeline` run (ingest, TFDV, tf.Transform, training, TFMA on the rest of the file, push) trains
    `transforms.skab`'s LSTM autoencoder on the first 400 rows, and the replay scores with the pushed model. Its
    runs (reports, models) stay in --work_dir when one is given.
A reading alerts when its score reaches the detector's threshold (scores are on the threshold's scale: 1). Over the
scored rows of all files (those after the first 400): F1 of the `anomaly` label, FAR (% of normal rows flagged) and
MAR (% of anomalous rows missed), next to the leaderboard's published numbers (all 34 files of SKAB). The changepoint
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
import concurrent.futures
import glob
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Sequence

import numpy as np

from beam_ml.stream.detectors.context import DetectorConfig, SensorPrior
from beam_ml.stream.detectors.pca import PcaSpec
from benchmarks.common import ROOT, environment
from benchmarks.incidents import fault_segments, incident_metrics, incidents
from benchmarks.nab.replay import DataFile, Series, WindowModel, detect_all, detect_files, unix_seconds
from benchmarks.nab.scoring import PROFILES, label_file, normalised, sweep

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data", "skab")
LABELS = ("anomaly", "changepoint")
FIT_ROWS = 400  # SKAB's protocol: every detector is fitted on each file's first 400 rows
MODEL_MODULE = "transforms.skab"
# --detectors choice → the name in the tables
DETECTORS = {"pca": "PCA T²+Q", "lstm_ae": "LSTM-AE", "context": "context, per channel"}
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


def column_name(channel: str) -> str:
    """A SKAB channel's name as a column name (an identifier): `Volume Flow RateRMS` → `Volume_Flow_RateRMS`."""
    return re.sub(r"\W", "_", channel)


def write_training_input(f: DataFile, run_dir: str) -> str:
    """The file as the batch pipeline reads it (CSV: timestamp, machine, the channels, anomaly) and its run config:
    train on the first FIT_ROWS rows, evaluate on the rest, push to `<run_dir>/serving`. Returns the config's path."""
    from transforms.skab import CHANNELS, WINDOW_LENGTH
    with open(f.path) as source:
        header = source.readline().strip().split(";")
    channels = [column_name(c) for c in header if c not in ("datetime", *LABELS)]
    if tuple(channels) != CHANNELS:
        raise ValueError(f"{f.path}: channels {channels}, but {MODEL_MODULE} is written for {list(CHANNELS)}")
    series, anomaly, _ = read_skab(f.path)
    if len(anomaly) <= FIT_ROWS + WINDOW_LENGTH:
        raise ValueError(f"{f.path}: {len(anomaly)} rows; training on the first {FIT_ROWS} and scoring windows of "
                         f"{WINDOW_LENGTH} after them needs more than {FIT_ROWS + WINDOW_LENGTH}")
    os.makedirs(run_dir, exist_ok=True)
    data = os.path.join(run_dir, "data.csv")
    with open(data, "w") as out:
        out.write(",".join(("timestamp", "machine", *channels, "anomaly")) + "\n")
        for t, values, label in zip(series.seconds, series.values, anomaly):
            out.write(",".join((str(int(t)), f.relative, *map(repr, values.tolist()), str(label))) + "\n")
    config = {
        "input": data, "label_key": "anomaly", "module": MODEL_MODULE,
        "output_dir": os.path.join(run_dir, "runs"), "serving_dir": os.path.join(run_dir, "serving"),
        "column_types": {"timestamp": "int", "machine": "string", **dict.fromkeys(channels, "float"), "anomaly": "int"},
        "split_time_key": "timestamp", "split_time_cutoffs": {"train": int(series.seconds[FIT_ROWS]), "eval": None},
        "window_key": "machine", "window_time_key": "timestamp", "window_length": WINDOW_LENGTH,
        "anomaly_policy": "warn", "eval_metrics": ["ExampleCount", "AUC", "Precision", "Recall"],
        # The gate checks the model was evaluated, nothing more: a model chosen by the labels of the very rows it is
        # then scored on would not be SKAB's protocol.
        "eval_thresholds": {"ExampleCount": {"lower": 1}},
        "hyperparameters": {"epochs": 30, "batch_size": 32, "lstm_units": 16, "threshold_quantile": 0.99,
                            "calibration_fraction": 0.25},
        "seed": 42}
    path = os.path.join(run_dir, "config.json")  # JSON is YAML: the job's --config reads it
    with open(path, "w") as out:
        json.dump(config, out, indent=1)
    return path


def train_window_model(f: DataFile, work_dir: str) -> str:
    """Trains `transforms.skab`'s LSTM autoencoder on the file's first FIT_ROWS rows with the batch pipeline
    (`jobs.train_pipeline`, its own process) and returns the serving directory it pushed to."""
    from beam_ml.model.push import latest_model
    run_dir = os.path.join(work_dir, f.relative.replace("/", "_").removesuffix(".csv"))
    config = write_training_input(f, run_dir)
    log = os.path.join(run_dir, "train.log")
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "-m", "jobs.train_pipeline", "--config", config], cwd=ROOT,
                              stdout=out, stderr=subprocess.STDOUT)
    serving = os.path.join(run_dir, "serving")
    if done.returncode or latest_model(serving) is None:
        raise RuntimeError(f"training on {f.relative} pushed no model (exit {done.returncode}); see {log}")
    return serving


def lstm_ae_scores(files: Sequence[DataFile], workers: int, work_dir: str) -> dict[str, np.ndarray]:
    """Per file, the scores (on the threshold's scale) of a window model trained on its first FIT_ROWS rows and
    replayed through `ScoreWithModel`; `workers` trainings, then replays, at a time."""
    from beam_ml.model.artifact import window_model_info
    from beam_ml.model.push import latest_model
    with concurrent.futures.ThreadPoolExecutor(workers) as threads:  # each training is its own process
        serving = dict(zip((f.relative for f in files), threads.map(train_window_model, files,
                                                                      [work_dir] * len(files))))
    name = DETECTORS["lstm_ae"]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        jobs = []
        for f in files:
            length = window_model_info(latest_model(serving[f.relative])).spec.length
            jobs.append(pool.submit(detect_files, [f], WindowModel(name, serving[f.relative]), length, 100,
                                    skab_series, False, True))
        return {f.relative: job.result().scores[name][f.relative] for f, job in zip(files, jobs)}


def detector_scores(detector: str, files: Sequence[DataFile], workers: int, work_dir: str) -> dict[str, np.ndarray]:
    """{file: per-row scores, 1 at the alert level} of a --detectors choice, from the streaming replay."""
    if detector == "lstm_ae":
        return lstm_ae_scores(files, workers, work_dir)
    if detector == "context":  # NAB's detector: each channel alone, the window's score their highest
        spec = DetectorConfig(sensors={f.relative: SensorPrior(learning_readings=FIT_ROWS) for f in files})
    else:
        spec = PcaSpec(fit_readings=FIT_ROWS)
    return detect_all(files, spec, workers, window_length=1, chunk=100, reader=skab_series, zscore=False,
                      relative=True).scores[spec.name]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=SHARED, help="folder of <folder>/<n>.csv SKAB files")
    parser.add_argument("--detectors", nargs="+", choices=DETECTORS, default=["pca"], help="detectors to run")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="replay (and training) processes")
    parser.add_argument("--work_dir", help="where lstm_ae's training runs and models are kept (default: a "
                                           "temporary folder, removed)")
    parser.add_argument("--changepoint_window", type=float, default=60.0, help="seconds after each changepoint")
    parser.add_argument("--incident_gap", type=float, default=60.0,
                        help="seconds without an alert that end an incident")
    args = parser.parse_args(argv)
    files, normal = skab_files(args.data)
    read = {f.relative: read_skab(f.path) for f in files + normal}
    rows = sum(len(anomaly) for _, anomaly, _ in read.values())
    scored = slice(FIT_ROWS, None)
    faulty = slice(0, len(files))
    with tempfile.TemporaryDirectory() as temporary:
        timed = {}  # detector → (its scores per file, seconds taken)
        for detector in args.detectors:
            start = time.perf_counter()
            scores = detector_scores(detector, files + normal, args.workers, args.work_dir or temporary)
            timed[detector] = (scores, time.perf_counter() - start)

    print(f"\nSKAB outliers: {len(files)} files with faults and {len(normal)} without, {rows:,} rows "
          f"({sum(len(a[scored]) for _, a, _ in read.values()):,} scored after the first {FIT_ROWS} of each), "
          f"{args.data}")
    print("| detector | F1 | FAR % | MAR % | files |")
    print("|---|---:|---:|---:|---|")
    # What every detector is judged against, per file: the scored rows' labels and faults, and the changepoint
    # windows (files with faults only).
    labels = [read[f.relative][1][scored] for f in files + normal]
    faults = [fault_segments(read[f.relative][0].seconds[scored], anomaly)
              for f, anomaly in zip(files + normal, labels)]
    changepoint_truth = []
    for f in files:
        series, _, changepoints = read[f.relative]
        times = np.array([np.datetime64(t.replace(" ", "T"), "s") for t in series.timestamps])
        changepoint_truth.append((f.relative, times, changepoint_windows(times, changepoints,
                                                                         args.changepoint_window)))
    rows_of = [(f"these {len(files)}", faulty)]
    if normal:
        rows_of.append((f"these {len(files)} + {', '.join(f.relative for f in normal)}", slice(None)))
    outcomes = {}
    for detector, (scores, _) in timed.items():
        alert_of = {f.relative: scores[f.relative] >= 1.0 for f in files + normal}
        alerts = [alert_of[f.relative][scored] for f in files + normal]
        incident_files = [(incidents(read[f.relative][0].seconds[scored], alert, args.incident_gap), found)
                          for f, alert, found in zip(files + normal, alerts, faults)]
        changepoint_files = [(relative, times, windows, alert_edges(alert_of[relative]))
                             for relative, times, windows in changepoint_truth]
        outcomes[detector] = (incident_files, changepoint_scores(changepoint_files))
        for label, kept in rows_of:
            f1, far, mar = outlier_metrics(labels[kept], alerts[kept])
            print(f"| beam_ml {DETECTORS[detector]} (streaming) | {f1:.3f} | {far:.2f} | {mar:.2f} | {label} |")
    for name, figures in PUBLISHED.items():
        print(f"| {name} (published) | " + " | ".join("—" if x is None else f"{x:g}" for x in figures)
              + " | SKAB's 34 |")
    for detector, (incident_files, _) in outcomes.items():
        precision, recall, made = incident_metrics(incident_files[faulty])
        false_incidents = "".join(f"; {f.relative}: {len(found)}, all false"
                                  for f, (found, _) in zip(normal, incident_files[faulty.stop:]))
        print(f"{DETECTORS[detector]} incidents (gap {args.incident_gap:g} s): {made}, precision {precision:.2f}, "
              f"recall {recall:.2f} ({sum(len(faults) for _, faults in incident_files[faulty])} faults)"
              f"{false_incidents}")
    print(f"\nSKAB changepoints (NAB's rules, {args.changepoint_window:g} s windows after each changepoint):")
    print("| detector | " + " | ".join(PROFILES) + " |")
    print("|---|" + "---:|" * len(PROFILES))
    for detector, (_, nab) in outcomes.items():
        print(f"| beam_ml {DETECTORS[detector]} (streaming) | " + " | ".join(f"{nab[p]:.1f}" for p in PROFILES)
              + " |")
    print(f"| MSCRED (published, best standard) | {PUBLISHED_CHANGEPOINT:g} | — | — |")
    for detector, (_, seconds) in timed.items():
        what = "training and replay" if detector == "lstm_ae" else "replay"
        print(f"{DETECTORS[detector]}: {what} {seconds:.1f} s with {args.workers} worker process(es)")
    print(environment(f"DirectRunner (streaming, TestStream) × {args.workers} processes"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
