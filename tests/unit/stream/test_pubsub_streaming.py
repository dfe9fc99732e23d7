"""Streaming against the real Cloud Pub/Sub emulator on the DirectRunner: telemetry published by the replay
functions → ReadFromPubSub(subscription) → ParseTelemetry → WindowPerSensor → a test-only threshold scorer →
WriteAlerts to a Pub/Sub topic and to files; plus the replay CLI publishing to the emulator.

Event times are wall-clock times (the replay runs at speedup 1), as in production: the DirectRunner's Pub/Sub
reader sets the watermark to the wall clock at the end of each pull, so readings are released `LATENESS` seconds
after their event time.
"""
import glob
import json
import os
import time

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from beam_ml.stream.elements import Alert
from beam_ml.stream.order import WindowPerSensor
from beam_ml.stream.parse import METRICS_NAMESPACE, ParseTelemetry
from beam_ml.stream.sinks import BIGQUERY_SCHEMA, WriteAlerts, alert_from_json
from tests.support.pubsub import PROJECT, poll, pull, running, topic_with_subscription
from tools.replay_telemetry import PUBLISHED_AT, publish_messages

CHANNELS = ("temperature", "pressure")
THRESHOLD = 100.0
LATENESS = 3.0  # seconds a reading may arrive after its event time and still be put in order
STEP = 0.5  # seconds of event time between a sensor's readings


def threshold_alerts(window):
    """Test-only scorer: an alert when any channel of the window reaches THRESHOLD."""
    peaks = [max(values[i] for values in window.values) for i in range(len(CHANNELS))]
    score = max(peaks)
    if score >= THRESHOLD:
        top = tuple(c for _, c in sorted(zip(peaks, CHANNELS), reverse=True) if _ >= THRESHOLD)
        yield Alert(window.sensor_id, window.start, window.end, score, THRESHOLD, "test-threshold", None, top)


class AppendJson(beam.DoFn):
    """Test-only sink: one JSON line per element appended to a local file (the DirectRunner is one process)."""

    def __init__(self, path, describe):
        self._path, self._describe = path, describe

    def process(self, element):
        with open(self._path, "a") as f:
            f.write(json.dumps(self._describe(element)) + "\n")
        return ()


def _lines(path):
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


def _reading(r):
    return [r.sensor_id, r.timestamp]


def _window(w):
    return [w.sensor_id, list(w.timestamps)]


def _dead_letter(d):
    return d.reason


def _telemetry(t0: float) -> list[dict]:
    """Three sensors, 8 readings each, STEP apart from t0: s1 spikes (temperature 150) at readings 4 and 5, s2
    (pressure 120) at reading 1, s3 never. s2's readings 2 and 3 are sent out of order, and s3's reading 2 twice."""
    spikes = {("s1", 4): {"temperature": 150.0}, ("s1", 5): {"temperature": 150.0}, ("s2", 1): {"pressure": 120.0}}
    messages = []
    for i in range(8):
        for sensor in ("s1", "s2", "s3"):
            message = {"sensor_id": sensor, "timestamp": round(t0 + i * STEP, 3), "temperature": 20.0 + i,
                       "pressure": 1.0, **spikes.get((sensor, i), {})}
            messages.append(message)
            if (sensor, i) == ("s3", 2):
                messages.append(dict(message))  # a duplicate
    s2 = [i for i, m in enumerate(messages) if m["sensor_id"] == "s2"]
    messages[s2[2]], messages[s2[3]] = messages[s2[3]], messages[s2[2]]  # out of order
    return messages


@pytest.mark.usefixtures("pubsub_emulator", "direct_runner_metrics")
def test_alerts_from_a_pubsub_stream_reach_the_alerts_topic_and_files(tmp_path):
    from google.cloud import pubsub_v1
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    telemetry_topic, telemetry_sub = topic_with_subscription(publisher, subscriber, "telemetry")
    alerts_topic, alerts_sub = topic_with_subscription(publisher, subscriber, "alerts")
    out = {name: str(tmp_path / f"{name}.jsonl") for name in ("windows", "late", "duplicates", "dead_letter")}
    files_dir = str(tmp_path / "alerts")

    # BundleBasedDirectRunner is what DirectRunner falls back to offline; named so that a machine with internet
    # access does not run this on the PrismRunner (which DirectRunner tries first and would download).
    p = beam.Pipeline(options=PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming",
                                               f"--project={PROJECT}"]))
    messages = p | "Read" >> beam.io.ReadFromPubSub(subscription=telemetry_sub, with_attributes=True)
    parsed = messages | "Parse" >> ParseTelemetry(CHANNELS, source=telemetry_sub)
    windowed = parsed.readings | "Window" >> WindowPerSensor(length=2, stride=2, allowed_lateness=LATENESS)
    alerts = windowed.windows | "Score" >> beam.FlatMap(threshold_alerts)
    _ = alerts | "WriteAlerts" >> WriteAlerts(topic=alerts_topic, files_dir=files_dir, file_window=5,
                                              allowed_lateness=LATENESS)
    _ = windowed.windows | "SaveWindows" >> beam.ParDo(AppendJson(out["windows"], _window))
    _ = windowed.late | "SaveLate" >> beam.ParDo(AppendJson(out["late"], _reading))
    _ = windowed.duplicates | "SaveDuplicates" >> beam.ParDo(AppendJson(out["duplicates"], _reading))
    _ = parsed.dead_letter | "SaveDeadLetters" >> beam.ParDo(AppendJson(out["dead_letter"], _dead_letter))

    started = time.time()
    with running(p, publisher, telemetry_topic) as result:
        t0 = round(time.time() + 0.5, 1)
        telemetry = _telemetry(t0)
        replayed = publish_messages(publisher, telemetry_topic, iter(telemetry), speedup=1.0)
        assert (replayed.published, replayed.failed) == (len(telemetry), 0)
        for bad in (b"not json", json.dumps({"sensor_id": "s1", "timestamp": t0, "temperature": 1,
                                             "pressure": "high"}).encode()):
            publisher.publish(telemetry_topic, bad).result(10)

        # Alerts: s2's window (t0, t0+0.5) and s1's (t0+2, t0+2.5), each once.
        received = []

        def alerts_so_far():
            received.extend(pull(subscriber, alerts_sub))
            return [alert_from_json(m.data) for m in received]

        def key(a):  # window bounds relative to t0
            return a.sensor_id, round(a.window_start - t0, 3), round(a.window_end - t0, 3), a.score, a.top_channels

        got = poll(alerts_so_far, lambda got: len(got) >= 2, timeout=30)
        assert sorted(map(key, got)) == [("s1", 2.0, 2.5, 150.0, ("temperature",)),
                                         ("s2", 0.0, 0.5, 120.0, ("pressure",))]
        assert all(a.detector == "test-threshold" and a.threshold == THRESHOLD for a in got)
        assert {m.attributes["sensor_id"] for m in received} == {"s1", "s2"}

        # s2 is now released past t0+0.5: a reading of t0+0.25 comes too late to be put in order.
        late = {"sensor_id": "s2", "timestamp": t0 + 0.25, "temperature": 1.0, "pressure": 1.0}
        publisher.publish(telemetry_topic, json.dumps(late).encode()).result(10)

        # Files: the same two alerts, in 5 s event-time windows, written once the watermark passed them.
        def file_alerts():
            return [alert_from_json(line) for path in glob.glob(os.path.join(files_dir, "alerts-*.jsonl"))
                    for line in open(path)]
        in_files = poll(file_alerts, lambda got: len(got) >= 2, timeout=30)
        assert sorted(map(key, in_files)) == sorted(map(key, got))

        windows = poll(lambda: _lines(out["windows"]), lambda w: len(w) >= 12, timeout=15)
        late_seen = poll(lambda: _lines(out["late"]), bool, timeout=15)
        dead = poll(lambda: _lines(out["dead_letter"]), lambda d: len(d) >= 2, timeout=15)
        assert len(alerts_so_far()) == 2  # nothing more arrived meanwhile
    elapsed = time.time() - started

    # Every sensor's 8 readings in order as 4 windows (s2's swapped pair and s3's duplicate change nothing).
    by_sensor = {}
    for sensor, stamps in windows:
        by_sensor.setdefault(sensor, []).append([round(s - t0, 3) for s in stamps])
    pairs = [[i * STEP, (i + 1) * STEP] for i in range(0, 8, 2)]
    assert {s: sorted(w) for s, w in by_sensor.items()} == {"s1": pairs, "s2": pairs, "s3": pairs}
    assert [[s, round(t - t0, 3)] for s, t in _lines(out["duplicates"])] == [["s3", 2 * STEP]]
    assert [[s, round(t - t0, 3)] for s, t in late_seen] == [["s2", 0.25]]
    assert sorted(reason.split(":")[0] for reason in dead) == ["channel 'pressure' is 'high', not a number",
                                                              "not JSON"]
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]}
    assert counters == {"windows": 12, "late_readings": 1, "duplicate_readings": 1, "gaps": 0,
                        "invalid_messages": 2}
    assert elapsed < 60, f"the streaming test took {elapsed:.0f} s"


@pytest.mark.usefixtures("pubsub_emulator")
def test_the_replay_cli_publishes_a_csv_to_the_emulator(tmp_path, capsys):
    from google.cloud import pubsub_v1

    from tools.replay_telemetry import main
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic, subscription = topic_with_subscription(publisher, subscriber, "replay")
    csv_path = tmp_path / "telemetry.csv"
    csv_path.write_text("timestamp,sensor_id,temperature,pressure,is_anomaly\n"
                        + "".join(f"{1000 + i},s{i % 2},{20 + i},1.5,{int(i == 3)}\n" for i in range(6)))
    before = time.time()
    assert main(["--csv", str(csv_path), "--topic", topic, "--rate", "20", "--limit", "5"]) == 0
    took = time.time() - before
    assert json.loads(capsys.readouterr().out) | {"seconds": 0} == {"published": 5, "failed": 0, "seconds": 0,
                                                                    "first_error": None}
    assert took >= 4 / 20  # paced: the 5th message 0.2 s after the first
    messages = poll(lambda: pull(subscriber, subscription), lambda m: len(m) == 5, timeout=10)
    records = sorted((json.loads(m.data) for m in messages), key=lambda r: r["timestamp"])
    assert records == [{"sensor_id": f"s{i % 2}", "timestamp": 1000 + i, "temperature": 20 + i, "pressure": 1.5}
                       for i in range(5)]
    assert all(before <= float(m.attributes[PUBLISHED_AT]) <= time.time() for m in messages)


# ---- the BigQuery sink, streaming, against bqemulator -----------------------------------------------------------
def _bq_client(bq_emulator):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery
    return bigquery.Client(project=bq_emulator["project"], credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=bq_emulator["rest"]))


def _alerts_stream(alerts):
    from apache_beam.testing.test_stream import TestStream
    stream = TestStream().advance_watermark_to(0)
    for alert in alerts:
        stream = stream.add_elements([beam.window.TimestampedValue(alert, min(alert.window_end, 1e10))])
        stream = stream.advance_watermark_to(min(alert.window_end, 1e10))
    return stream.advance_watermark_to_infinity()


def _run_bigquery_sink(alerts, table, dead_letter_path):
    p = beam.Pipeline(options=PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming",
                                               f"--project={PROJECT}"]))
    written = p | _alerts_stream(alerts) | "WriteAlerts" >> WriteAlerts(table=table)
    _ = written.dead_letters | "BigQueryDeadLetters" >> beam.Flatten() | "SaveDeadLetters" >> beam.ParDo(
        AppendJson(dead_letter_path, lambda d: [d.source, json.loads(d.raw)["sensor_id"], d.reason]))
    p.run().wait_until_finish()


T0 = 1767225600.0  # 2026-01-01T00:00:00Z


def test_alerts_stream_into_a_bigquery_table_created_with_the_alert_schema(bq_emulator, tmp_path):
    import datetime
    import uuid
    client = _bq_client(bq_emulator)
    dataset = "alerts_" + uuid.uuid4().hex[:8]
    client.create_dataset(dataset)
    alerts = [Alert("pump-1", T0 + 1, T0 + 2.5, 150.0, 100.0, "test-threshold", None, ("temperature",)),
              Alert("pump-2", T0 + 3, T0 + 4, float("inf"), 0.9, "iforest", "7", ("vibration", "pressure")),
              Alert("pump-3", 1e12, 1e12 + 1, 1.0, 0.5, "zscore")]  # year 33658: not a BigQuery TIMESTAMP
    dead = str(tmp_path / "dead.jsonl")
    _run_bigquery_sink(alerts, f"{PROJECT}:{dataset}.alerts", dead)

    table = client.get_table(f"{PROJECT}.{dataset}.alerts")
    legacy = {"FLOAT64": "FLOAT"}  # BigQuery answers with legacy type names; the emulator echoes what was sent
    assert [(f.name, legacy.get(f.field_type, f.field_type), f.mode) for f in table.schema] == [
        ("sensor_id", "STRING", "REQUIRED"), ("window_start", "TIMESTAMP", "REQUIRED"),
        ("window_end", "TIMESTAMP", "REQUIRED"), ("score", "FLOAT", "REQUIRED"), ("threshold", "FLOAT", "REQUIRED"),
        ("detector", "STRING", "REQUIRED"), ("model_version", "STRING", "NULLABLE"),
        ("top_channels", "STRING", "REPEATED")]
    rows = sorted((dict(r) for r in client.list_rows(table)), key=lambda r: r["sensor_id"])
    utc = datetime.timezone.utc
    assert rows == [
        {"sensor_id": "pump-1", "window_start": datetime.datetime(2026, 1, 1, 0, 0, 1, tzinfo=utc),
         "window_end": datetime.datetime(2026, 1, 1, 0, 0, 2, 500000, tzinfo=utc), "score": 150.0,
         "threshold": 100.0, "detector": "test-threshold", "model_version": None, "top_channels": ["temperature"]},
        {"sensor_id": "pump-2", "window_start": datetime.datetime(2026, 1, 1, 0, 0, 3, tzinfo=utc),
         "window_end": datetime.datetime(2026, 1, 1, 0, 0, 4, tzinfo=utc), "score": float("inf"),
         "threshold": 0.9, "detector": "iforest", "model_version": "7", "top_channels": ["vibration", "pressure"]}]
    assert _lines(dead) == [[f"{PROJECT}:{dataset}.alerts", "pump-3", "not a BigQuery row: year 33658 is out of range"]]
    client.delete_dataset(dataset, delete_contents=True)


def test_rows_bigquery_rejects_come_out_as_dead_letters(bq_emulator, tmp_path):
    """An existing table whose schema does not fit every alert (sensor_id INT64): BigQuery's per-row insert errors
    become dead letters; the rows that fit are written."""
    import uuid

    from google.cloud import bigquery
    client = _bq_client(bq_emulator)
    dataset = "alerts_" + uuid.uuid4().hex[:8]
    client.create_dataset(dataset)
    schema = [bigquery.SchemaField(f["name"], "INT64" if f["name"] == "sensor_id" else f["type"], mode=f["mode"])
              for f in BIGQUERY_SCHEMA["fields"]]
    client.create_table(bigquery.Table(f"{PROJECT}.{dataset}.alerts", schema=schema))
    alerts = [Alert("17", T0 + 1, T0 + 2, 150.0, 100.0, "test-threshold"),
              Alert("pump-7", T0 + 3, T0 + 4, 150.0, 100.0, "test-threshold")]
    dead = str(tmp_path / "dead.jsonl")
    _run_bigquery_sink(alerts, f"{PROJECT}:{dataset}.alerts", dead)

    assert [r["sensor_id"] for r in client.list_rows(f"{PROJECT}.{dataset}.alerts")] == [17]
    letters = _lines(dead)
    assert [(source, sensor) for source, sensor, _ in letters] == [(f"{PROJECT}:{dataset}.alerts", "pump-7")]
    assert letters[0][2].startswith("BigQuery rejected the alert: [{") and "invalid" in letters[0][2]
    client.delete_dataset(dataset, delete_contents=True)
