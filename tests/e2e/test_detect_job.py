"""The streaming detection job (beam_ml.stream) on the Pub/Sub emulator with the trained telemetry model: injected
anomalies alerted and grouped into incidents, out-of-order messages handled, malformed, late and duplicate ones
dead-lettered, and a model pushed mid-stream picked up without a restart. Plus its options."""
import json
import os
import shutil
import time

import apache_beam as beam
import pandas as pd
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from beam_ml.config.detect import DetectConfig
from beam_ml.core.errors import ConfigError
from beam_ml.stream.parse import METRICS_NAMESPACE
from beam_ml.stream.pipeline import DetectAnomalies
from beam_ml.stream.plan import plan_detect
from beam_ml.stream.sinks import alert_from_json
from tests.support.paths import ROOT
from tests.support.pubsub import PROJECT, poll, pull, running, topic_with_subscription
from tools.replay_telemetry import publish_messages
from tools.telemetry_generator import CHANNELS

DATA = os.path.join(ROOT, "examples", "telemetry", "data", "telemetry.csv")
STEP = 0.2  # seconds of event time between a sensor's readings: the replay compresses 5-minute data 1500 times
READINGS_PER_PHASE = 40
# Readings of a phase with flow lifted far off its coupling to the other channels: early enough in the phase that
# every window holding one ends within the phase (not across the pause before the next one).
ANOMALY = range(4, 12)


def normal_stretch(data: pd.DataFrame, sensor: str, length: int) -> pd.DataFrame:
    """The first `length` consecutive eval readings of `sensor` without a labelled anomaly."""
    rows = data[(data.sensor_id == sensor) & (data.timestamp >= 1705276800)].reset_index(drop=True)
    clean = rows.is_anomaly.rolling(length).max()
    end = int(clean[clean == 0].index[0])
    return rows.iloc[end - length + 1:end + 1].reset_index(drop=True)


def phase_messages(stretches: dict, phase: int, t0: float, anomalous: str) -> list[dict]:
    """Phase `phase` (40 readings per sensor, STEP apart from t0) of every sensor; `anomalous` gets the anomaly."""
    messages = []
    for i in range(READINGS_PER_PHASE):
        for sensor, rows in stretches.items():
            row = rows.iloc[phase * READINGS_PER_PHASE + i]
            values = {c: float(row[c]) for c in CHANNELS}
            if sensor == anomalous and i in ANOMALY:
                values["flow"] += 1.0
            messages.append({"sensor_id": sensor, "timestamp": round(t0 + i * STEP, 3), **values})
    return messages


def config(tmp_path, serving_dir, **overrides):
    values = {"subscription": "projects/test-project/subscriptions/telemetry", "serving_dir": serving_dir,
              "output_dir": str(tmp_path / "runs"), "alerts_dir": str(tmp_path / "alerts"),
              "dead_letter_dir": str(tmp_path / "dead"), **overrides}
    return DetectConfig.load(None, {k: v for k, v in values.items() if v is not None})


@pytest.mark.usefixtures("pubsub_emulator", "direct_runner_metrics")
def test_detection_job_on_the_pubsub_emulator_with_a_model_pushed_mid_stream(trained_telemetry, tmp_path):
    from google.cloud import pubsub_v1
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    telemetry_topic, telemetry_sub = topic_with_subscription(publisher, subscriber, "telemetry")
    alerts_topic, alerts_sub = topic_with_subscription(publisher, subscriber, "alerts")
    dead_topic, dead_sub = topic_with_subscription(publisher, subscriber, "dead")
    incidents_topic, incidents_sub = topic_with_subscription(publisher, subscriber, "incidents")
    serving_dir = str(tmp_path / "serving")
    shutil.copytree(trained_telemetry["pushed_model_dir"], os.path.join(serving_dir, "100"))

    plan = plan_detect(config(tmp_path, serving_dir, subscription=telemetry_sub, alerts_topic=alerts_topic,
                              dead_letter_topic=dead_topic, allowed_lateness="1", model_poll_seconds="0.5",
                              file_window="5", incidents_topic=incidents_topic, incident_gap="3"))
    assert plan.channels == CHANNELS and plan.spec.length == 24
    p = beam.Pipeline(options=PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming",
                                               f"--project={PROJECT}"]))
    _ = p | "DetectAnomalies" >> DetectAnomalies(plan)

    data = pd.read_csv(DATA)
    stretches = {s: normal_stretch(data, s, 2 * READINGS_PER_PHASE) for s in ("sensor-01", "sensor-02")}
    received = []

    def alerts_so_far():
        received.extend(alert_from_json(m.data) for m in pull(subscriber, alerts_sub))
        return list(received)

    def alerted(sensor, t0, version):
        return [a for a in received if a.sensor_id == sensor and a.model_version == version
                and t0 + ANOMALY[0] * STEP <= a.window_end <= t0 + (ANOMALY[-1] + 23) * STEP]

    with running(p, publisher, telemetry_topic) as result:
        # Phase 1: sensor-01 has an anomaly; one pair of sensor-02's readings arrives swapped, one message twice,
        # two are malformed.
        t0 = round(time.time() + 1.0, 1)
        first = phase_messages(stretches, 0, t0, anomalous="sensor-01")
        first[11], first[13] = first[13], first[11]  # sensor-02's readings 5 and 6, out of order
        first.insert(20, dict(first[20]))  # a duplicate
        publish_messages(publisher, telemetry_topic, iter(first), speedup=1.0)
        for bad in (b"{not json", json.dumps({"sensor_id": "sensor-02", "timestamp": t0, "flow": 1.0}).encode()):
            publisher.publish(telemetry_topic, bad).result(10)
        poll(alerts_so_far, lambda _: alerted("sensor-01", t0, "100"), timeout=60)
        assert alerted("sensor-01", t0, "100"), received
        assert {tuple(a.top_channels[:1]) for a in alerted("sensor-01", t0, "100")} == {("flow",)}

        # A reading of sensor-02 from long before what it has released is late.
        late = {"sensor_id": "sensor-02", "timestamp": t0 + STEP / 2, **{c: 1.0 for c in CHANNELS}}
        publisher.publish(telemetry_topic, json.dumps(late).encode()).result(10)

        # A new model version is pushed (an atomic rename, as beam_ml.model.push does) while the job runs.
        shutil.copytree(os.path.join(serving_dir, "100"), str(tmp_path / "staging"))
        os.rename(str(tmp_path / "staging"), os.path.join(serving_dir, "200"))
        time.sleep(1.0)  # longer than model_poll_seconds

        # Phase 2: sensor-02 has an anomaly; its alerts carry the new version.
        t1 = round(time.time() + 1.0, 1)
        publish_messages(publisher, telemetry_topic, iter(phase_messages(stretches, 1, t1, "sensor-02")),
                         speedup=1.0)
        poll(alerts_so_far, lambda _: alerted("sensor-02", t1, "200"), timeout=60)
        assert alerted("sensor-02", t1, "200"), received
        assert not [a for a in received if a.window_end >= t1 + ANOMALY[0] * STEP and a.model_version == "100"]

        # sensor-01's run of alerts is one incident: opened, at most one update (a minute's rate limit), closed
        # once the watermark passed 3 s after its last alert (plus the 1 s allowed lateness and the 60 s margin for
        # late alerts: some of its windows are scored late, by the model pushed meanwhile). The tracker takes a sensor's alerts in window-end order,
        # so the incident holding the first anomaly alert spans the alerts whose window ends lie between its open and
        # its close.
        first_anomaly_end = min(a.window_end for a in alerted("sensor-01", t0, "100"))
        incidents = []

        def anomaly_incident():
            incidents.extend(json.loads(m.data) for m in pull(subscriber, incidents_sub))
            runs = {}
            for event in incidents:  # (Pub/Sub keeps no order)
                if event["sensor_id"] == "sensor-01":
                    runs.setdefault(event["incident_id"], []).append(event)
            return next((sorted(run, key=lambda i: ("open", "update", "close").index(i["event"]))
                         for run in runs.values() if {"open", "close"} <= {i["event"] for i in run}
                         and min(i["end"] for i in run) <= first_anomaly_end <= max(i["end"] for i in run)), [])
        first_run = poll(anomaly_incident, bool, timeout=120)
        assert [i["event"] for i in first_run][0] == "open" and [i["event"] for i in first_run][-1] == "close"
        assert len(first_run) <= 3 and first_run[0]["start"] < t1

        dead = poll(lambda: [json.loads(m.data) for m in pull(subscriber, dead_sub)], lambda d: len(d) >= 4,
                    timeout=30)
        # The same alerts in files, once the watermark has passed their 5 s file windows.
        files_dir = tmp_path / "alerts"

        def in_incident():
            return [a for a in received if a.sensor_id == "sensor-01"
                    and first_run[0]["end"] <= a.window_end <= first_run[-1]["end"]]

        def topic_and_files():
            alerts_so_far()
            return (sorted((a.sensor_id, a.window_end) for a in received),
                    sorted((a.sensor_id, a.window_end) for f in files_dir.glob("alerts-*.jsonl")
                           for a in map(alert_from_json, open(f))))
        from_topic, from_files = poll(topic_and_files, lambda both: both[0] == both[1]
                                      and len(in_incident()) >= first_run[-1]["alerts"], timeout=30)
        assert from_files == from_topic
        assert first_run[-1]["alerts"] == len(in_incident()) > len(first_run)  # every alert of the run, in one
        assert first_run[-1]["peak_score"] == pytest.approx(max(a.score for a in in_incident()))
    reasons = sorted(d["reason"].split(":")[0] for d in dead)
    assert reasons == ["channel 'temperature' is missing, not a number", "duplicate", "late", "not JSON"]
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]}
    assert counters["duplicate_readings"] == 1 and counters["late_readings"] == 1
    assert counters["invalid_messages"] == 2


def test_detection_options_are_checked_before_anything_starts(trained_telemetry, tmp_path):
    serving_dir = os.path.dirname(trained_telemetry["pushed_model_dir"])
    with pytest.raises(ConfigError, match="--detector: 'lof' does not match"):
        config(tmp_path, serving_dir, detector="lof")
    with pytest.raises(ConfigError, match="--detector: context: threshold must be in"):
        plan_detect(config(tmp_path, serving_dir, detector="model,context:2"))
    with pytest.raises(ConfigError, match="--channels: is required when no model"):
        config(tmp_path, None, detector="zscore")
    with pytest.raises(ConfigError, match="--serving_dir: is required when the detector includes model"):
        config(tmp_path, None, detector="model,zscore")
    with pytest.raises(ConfigError, match="--vote: applies to an ensemble"):
        config(tmp_path, serving_dir, vote="all")
    with pytest.raises(ConfigError, match="--subscription"):
        config(tmp_path, serving_dir, subscription="telemetry")
    with pytest.raises(ConfigError, match="--alerts_topic: give at least one"):
        config(tmp_path, serving_dir, alerts_dir=None)
    with pytest.raises(ConfigError, match="--dead_letter_topic"):
        config(tmp_path, serving_dir, dead_letter_dir=None)
    with pytest.raises(ConfigError, match="--serving_dir: no model has been pushed"):
        plan_detect(config(tmp_path, str(tmp_path / "empty")))
    not_windowed = tmp_path / "plain" / "1"
    shutil.copytree(trained_telemetry["pushed_model_dir"], not_windowed)
    os.remove(not_windowed / "assets.extra" / "windowing.json")
    with pytest.raises(ConfigError, match="--serving_dir: .* is not a window model"):
        plan_detect(config(tmp_path, str(tmp_path / "plain")))
    plan = plan_detect(config(tmp_path, serving_dir))
    assert plan.model_dir == trained_telemetry["pushed_model_dir"]


@pytest.mark.usefixtures("pubsub_emulator")
def test_beams_online_detectors_without_a_model_on_the_pubsub_emulator(tmp_path):
    """--detector zscore,robust_zscore,iqr --vote all --channels ...: no model; a spike is alerted by all three,
    named after them, with the spiking channel first; a malformed message is dead-lettered, and so is each of a
    burst of poison messages sent first (the job keeps running through them)."""
    from google.cloud import pubsub_v1
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    telemetry_topic, telemetry_sub = topic_with_subscription(publisher, subscriber, "telemetry-online")
    alerts_topic, alerts_sub = topic_with_subscription(publisher, subscriber, "alerts-online")
    dead_topic, dead_sub = topic_with_subscription(publisher, subscriber, "dead-online")
    plan = plan_detect(config(tmp_path, None, subscription=telemetry_sub, detector="zscore,robust_zscore,iqr",
                              vote="all", channels=",".join(CHANNELS), alerts_topic=alerts_topic,
                              dead_letter_topic=dead_topic, allowed_lateness="1"))
    assert plan.model_dir is None and plan.members == 3 and plan.spec.length == 1
    p = beam.Pipeline(options=PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming",
                                               f"--project={PROJECT}"]))
    _ = p | "DetectAnomalies" >> DetectAnomalies(plan)

    data = pd.read_csv(DATA)
    stretches = {s: normal_stretch(data, s, READINGS_PER_PHASE * 2) for s in ("sensor-01", "sensor-02")}
    spike_at, pressure = 60, stretches["sensor-01"].pressure
    with running(p, publisher, telemetry_topic):
        t0 = round(time.time() + 1.0, 1)
        messages = phase_messages(stretches, 0, t0, anomalous="none") + \
            phase_messages(stretches, 1, t0 + READINGS_PER_PHASE * STEP, anomalous="none")
        spike = next(m for m in messages if m["sensor_id"] == "sensor-01"
                     and m["timestamp"] == round(t0 + spike_at * STEP, 3))
        spike["pressure"] = float(pressure.mean() + 20 * pressure.std())
        for poison in poison_messages(t0):
            publisher.publish(telemetry_topic, poison).result(10)
        publish_messages(publisher, telemetry_topic, iter(messages), speedup=1.0)
        publisher.publish(telemetry_topic, b'"on"').result(10)
        received = poll(lambda: [alert_from_json(m.data) for m in pull(subscriber, alerts_sub)],
                        lambda alerts: any(a.window_end == spike["timestamp"] for a in alerts), timeout=60)
        dead = []  # every pull acks what it returns: collected across pulls
        poll(lambda: dead.extend(json.loads(m.data) for m in pull(subscriber, dead_sub)) or dead,
             lambda d: len(d) >= 1 + len(POISON_REASONS), timeout=30)
    hit = next(a for a in received if a.window_end == spike["timestamp"])
    assert (hit.sensor_id, hit.detector, hit.top_channels[0]) == ("sensor-01", "iqr+robust_zscore+zscore",
                                                                 "pressure")
    assert hit.window_start == hit.window_end and hit.model_version is None and hit.score == 1.0
    assert sorted(d["reason"] for d in dead) == sorted(["not a JSON object but str", *POISON_REASONS])


# What a hostile or broken sender can put in a message, and the dead letter's reason for each (issue 22).
POISON_REASONS = ["not JSON this parser can read: nested too deeply", "timestamp is inf",
                  f"channel '{CHANNELS[0]}' is beyond the range of a float", "timestamp 1e+18 is outside years 1 to 9999",
                  f"a message of {(1 << 20) + 1} bytes is over the limit of {1 << 20}"]


def poison_messages(t0: float) -> list[bytes]:
    channels = ", ".join(f'"{c}": 1.0' for c in CHANNELS[1:])
    return [b"[" * 5000 + b"]" * 5000,
            f'{{"sensor_id": "sensor-01", "timestamp": 1e400, "{CHANNELS[0]}": 1.0, {channels}}}'.encode(),
            f'{{"sensor_id": "sensor-01", "timestamp": {t0}, "{CHANNELS[0]}": 1{"0" * 400}, {channels}}}'.encode(),
            f'{{"sensor_id": "sensor-02", "timestamp": 1e18, "{CHANNELS[0]}": 1.0, {channels}}}'.encode(),
            b"x" * ((1 << 20) + 1)]
