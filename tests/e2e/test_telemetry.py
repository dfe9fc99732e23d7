"""The telemetry example end to end: windows per sensor, an LSTM autoencoder, a calibrated threshold, pushed."""
import json
import math
import os
import shutil

import apache_beam as beam
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that

from beam_ml.config.detect import DetectConfig
from beam_ml.core.records import RecordFormat
from beam_ml.core.windowing import Reading, SensorWindow, WindowSpec, release
from beam_ml.model.artifact import WINDOWING_ASSET, serialized_windows
from beam_ml.stream.model_scoring import ScoreWithModel, ServingModel
from beam_ml.stream.order import WindowPerSensor
from beam_ml.stream.parse import ParseTelemetry
from beam_ml.stream.pipeline import DetectAnomalies
from beam_ml.stream.plan import plan_detect
from beam_ml.stream.verdicts import ToAlerts
from tests.support.paths import ROOT
from tools.telemetry_generator import CHANNELS, generate

pytestmark = pytest.mark.e2e

DATA = os.path.join(ROOT, "examples", "telemetry", "data", "telemetry.csv")
EVAL_START = 1705276800  # 2024-01-15, the config's time split


def test_bundled_data_is_what_the_generator_makes():
    rows, _ = generate(days=21, interval=300, seed=7)
    pd.testing.assert_frame_equal(pd.read_csv(DATA), rows, check_dtype=False, atol=1e-4)


def test_windows_train_calibrate_evaluate_and_push(trained_telemetry):
    manifest = trained_telemetry
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


def test_the_scorer_picks_up_a_newly_pushed_version(trained_telemetry, tmp_path):
    serving_dir = str(tmp_path / "serving")
    first = os.path.join(serving_dir, "100")
    shutil.copytree(trained_telemetry["pushed_model_dir"], first)
    model = ServingModel(serving_dir, poll_seconds=0)
    info = model.info
    assert model.version == "100" and info.channels == CHANNELS and info.spec.length == 24
    assert info.fmt.columns == ("timestamp", "sensor_id", *CHANNELS)  # the label is not a serving input
    window = SensorWindow("sensor-01", tuple(float(t) for t in range(0, 24 * 300, 300)), ((0.0,) * 4,) * 24)
    before = model.score([window])
    # A push is a rename of a complete directory (beam_ml.model.push); the next batch is scored with the new version.
    shutil.copytree(first, str(tmp_path / "staging"))
    os.rename(str(tmp_path / "staging"), os.path.join(serving_dir, "200"))
    model.refresh()
    after = model.score([window])
    assert (before[0].model_version, after[0].model_version) == ("100", "200")
    assert after[0].score == pytest.approx(before[0].score)


def _decoupled_event_stream():
    """The first injected 'decoupled' anomaly of the eval week and one sensor's readings around it, as JSON
    messages on a TestStream (a pair swapped)."""
    _, injected = generate(days=21, interval=300, seed=7)
    event = next(a for a in injected if a.start >= EVAL_START and a.kind == "decoupled")
    data = pd.read_csv(DATA)
    rows = data[(data.sensor_id == event.sensor_id) & (data.timestamp >= event.start - 48 * 300)
                & (data.timestamp <= event.end + 24 * 300)]
    messages = [json.dumps({"sensor_id": event.sensor_id, "timestamp": int(r.timestamp),
                            **{c: float(getattr(r, c)) for c in CHANNELS}}).encode() for r in rows.itertuples()]
    messages[10], messages[11] = messages[11], messages[10]
    # The watermark passes every reading by the allowed lateness before it jumps to infinity: the
    # BundleBasedDirectRunner drops output of timers that fire only on the jump to infinity.
    stream = (TestStream().advance_watermark_to(event.start - 48 * 300)
              .add_elements(messages[:len(messages) // 2])
              .advance_watermark_to(event.start)
              .add_elements(messages[len(messages) // 2:])
              .advance_watermark_to(event.end + 24 * 300 + 3600 + 1)
              .advance_watermark_to_infinity())
    return event, stream, len(messages)


def _streaming_pipeline():
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return TestPipeline(options=options)


def test_score_with_model_alerts_on_an_injected_anomaly_in_a_stream(trained_telemetry):
    """Alerts come for the anomaly's windows, name the model version, and rank the anomaly's channel first."""
    event, stream, _ = _decoupled_event_stream()
    serving_dir = os.path.dirname(trained_telemetry["pushed_model_dir"])
    with _streaming_pipeline() as p:
        readings = (p | stream | ParseTelemetry(CHANNELS)).readings
        windows = (readings | WindowPerSensor(length=24, stride=1, allowed_lateness=3600, max_gap=900)).windows
        alerts = windows | ScoreWithModel(serving_dir) | ToAlerts(top=len(CHANNELS))

        def check(found):
            assert found, "no alert"
            version = os.path.basename(trained_telemetry["pushed_model_dir"])
            assert all(a.model_version == version and a.score >= a.threshold for a in found)
            assert all(event.start <= a.window_end <= event.end + 23 * 300 for a in found), found
            assert any(a.top_channels[0] == event.channel for a in found)

        assert_that(alerts, check)


def test_detection_job_with_the_model_and_beams_robust_zscore_voting(trained_telemetry, tmp_path):
    """The job's graph with --detector model,robust_zscore --vote all: one verdict per window from both members,
    alerts only where both alert, carrying the model version; the anomaly is among them."""
    event, stream, readings = _decoupled_event_stream()
    plan = plan_detect(DetectConfig.load(None, {
        "subscription": "projects/test-project/subscriptions/telemetry", "detector": "model,robust_zscore",
        "vote": "all", "serving_dir": os.path.dirname(trained_telemetry["pushed_model_dir"]),
        "output_dir": str(tmp_path / "runs"), "alerts_dir": str(tmp_path / "alerts"),
        "dead_letter_dir": str(tmp_path / "dead"), "allowed_lateness": "3600"}))
    assert plan.members == 2
    version = os.path.basename(trained_telemetry["pushed_model_dir"])
    with _streaming_pipeline() as p:
        out = p | DetectAnomalies(plan, source=stream | "Messages" >> beam.Map(PubsubMessage, {}))

        def check(found):
            assert found and all(a.detector == "model+robust_zscore" and a.score == 1.0 and a.threshold == 1.0
                                 and a.model_version == version for a in found), found
            assert any(event.start <= a.window_end <= event.end + 23 * 300 and event.channel in a.top_channels
                       for a in found), found

        assert_that(out.alerts, check, label="Alerts")
        windows = readings - 23  # the readings are 5 minutes apart, without a gap
        for name in ("windows", "verdicts"):
            assert_that(getattr(out, name) | f"{name}Ends" >> beam.Map(lambda w: (w.sensor_id, w.end)),
                        lambda ends: len(ends) == len(set(ends)) == windows or pytest.fail(f"{len(ends)} ends"),
                        label=f"OnePer{name}")
