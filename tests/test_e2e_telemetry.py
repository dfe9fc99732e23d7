"""The telemetry example end to end: windows per sensor, an LSTM autoencoder, a calibrated threshold, pushed."""
import json
import math
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from beam_ml.records import RecordFormat
from beam_ml.streaming import Reading, release
from beam_ml.telemetry_generator import CHANNELS, generate
from beam_ml.train import WINDOWING_ASSET
from beam_ml.windows import WindowSpec, serialized_windows
from conftest import ROOT, job_args, run_job

pytestmark = pytest.mark.e2e

CONFIG = os.path.join(ROOT, "examples", "telemetry", "config.yaml")
DATA = os.path.join(ROOT, "examples", "telemetry", "data", "telemetry.csv")
EVAL_START = 1705276800  # 2024-01-15, the config's time split


def test_bundled_data_is_what_the_generator_makes():
    rows, _ = generate(days=21, interval=300, seed=7)
    pd.testing.assert_frame_equal(pd.read_csv(DATA), rows, check_dtype=False, atol=1e-4)


def test_windows_train_calibrate_evaluate_and_push(tmp_path):
    code, manifest = run_job(*job_args(tmp_path, "telemetry", config=CONFIG))
    assert code == 0, manifest.get("error")
    assert manifest["status"] == "succeeded" and manifest["blessed"] is True
    counts = manifest["counts"]
    assert counts["read"] == sum(counts["splits"].values()) == 24192
    # No gaps and no missing values: each of the 4 sensors' rows in a split give rows - 23 windows.
    assert counts["windows"] == {name: n - 4 * 23 for name, n in counts["splits"].items()}
    metrics = manifest["metrics"]
    assert metrics["example_count"] == counts["windows"]["eval"]
    assert metrics["precision"] >= 0.8 and metrics["recall"] >= 0.4 and metrics["auc"] >= 0.8

    model_dir = manifest["pushed_model_dir"]
    windowing = json.load(open(os.path.join(model_dir, WINDOWING_ASSET)))
    assert windowing == {"key": "sensor_id", "time_key": "timestamp", "length": 24, "stride": 1, "max_gap": 900.0,
                         "label": "is_anomaly"}

    # Score every eval window the way a streaming job does (windows → tf.Examples → serving_default), without
    # labels, and compare alerts with the anomalies the generator injected.
    data = pd.read_csv(DATA)
    data = data[data.timestamp >= EVAL_START]
    fmt = RecordFormat(("timestamp", "sensor_id", *CHANNELS), ("int", "string", "float", "float", "float", "float"))
    spec = WindowSpec("sensor_id", "timestamp", 24, 1, 900.0)
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    alerts = []
    for sensor, rows in data.groupby("sensor_id"):
        readings = [Reading(sensor, float(t), tuple(v)) for t, v in
                    zip(rows.timestamp, rows[list(CHANNELS)].itertuples(index=False))]
        windows = release(readings, None, math.inf, 24, 1, 900.0)[2]
        out = serve(examples=tf.constant(serialized_windows(windows, fmt, spec)))
        threshold = out["threshold"].numpy()
        assert np.all(threshold == threshold[0]) and threshold[0] > 0
        assert out["channel_errors"].shape == (len(windows), len(CHANNELS))
        alerts += [(sensor, w.end) for w, s in zip(windows, out["score"].numpy()) if s >= threshold[0]]
    _, injected = generate(days=21, interval=300, seed=7)
    events = [a for a in injected if a.start >= EVAL_START]
    found = [a for a in events if any(s == a.sensor_id and a.start <= end <= a.end + 23 * 300 for s, end in alerts)]
    assert len(found) >= 0.6 * len(events), [(a.kind, a.channel) for a in events if a not in found]
    assert {a.kind for a in found} >= {"spike", "decoupled", "level_shift"}
    false_alerts = [(s, end) for s, end in alerts
                    if not any(s == a.sensor_id and a.start <= end <= a.end + 23 * 300 for a in events)]
    assert len(false_alerts) <= 4 * 7  # at most one false alert window per sensor-day
