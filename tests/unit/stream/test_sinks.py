"""Alert formats (JSON, BigQuery row, file names), WriteAlerts' argument checks, and its file sink on a TestStream
(streaming, BundleBasedDirectRunner). The Pub/Sub and BigQuery sinks run against the emulators in
test_pubsub_streaming.py."""
import datetime
import glob
import json
import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import GlobalWindow, IntervalWindow

from beam_ml.stream.elements import Alert
from beam_ml.stream.sinks import (
    BIGQUERY_SCHEMA,
    WriteAlerts,
    alert_from_json,
    alert_row,
    alert_to_json,
    file_name,
    keyed_json_line,
    rejected_row_dead_letter,
    to_pubsub_message,
)

T0 = 1767225600.0  # 2026-01-01T00:00:00Z
ALERT = Alert("pump-7", T0 + 10, T0 + 12.5, 0.97, 0.9, "iforest", "3", ("vibration", "temperature"))


def test_an_alert_is_one_json_object_that_reads_back():
    record = json.loads(alert_to_json(ALERT))
    assert record == {"sensor_id": "pump-7", "window_start": T0 + 10, "window_end": T0 + 12.5, "score": 0.97,
                      "threshold": 0.9, "detector": "iforest", "model_version": "3",
                      "top_channels": ["vibration", "temperature"]}
    assert alert_from_json(alert_to_json(ALERT)) == ALERT
    online = Alert("s", 1.0, 2.0, 5.0, 3.0, "zscore")
    assert json.loads(alert_to_json(online))["model_version"] is None
    assert alert_from_json(alert_to_json(online).encode()) == online


def test_an_alert_row_fits_the_bigquery_schema():
    row = alert_row(ALERT)
    assert row == {"sensor_id": "pump-7", "window_start": "2026-01-01 00:00:10.000000 UTC",
                   "window_end": "2026-01-01 00:00:12.500000 UTC", "score": 0.97, "threshold": 0.9,
                   "detector": "iforest", "model_version": "3", "top_channels": ["vibration", "temperature"]}
    assert [f["name"] for f in BIGQUERY_SCHEMA["fields"]] == list(row)
    assert alert_row(Alert("s", 0.0, 1.000001, 1, 1, "d"))["window_end"] == "1970-01-01 00:00:01.000001 UTC"
    with pytest.raises(ValueError, match="out of range"):
        alert_row(Alert("s", 1e12, 1e12, 1, 1, "d"))


def test_non_finite_scores_stay_valid_json_and_bigquery_floats():
    alert = Alert("s", 1.0, 2.0, float("inf"), float("nan"), "d")
    text = alert_to_json(alert)
    assert json.loads(text)["score"] == "Infinity" and json.loads(text)["threshold"] == "NaN"
    back = alert_from_json(text)
    assert back.score == float("inf") and back.threshold != back.threshold
    assert (alert_row(alert)["score"], alert_row(alert)["threshold"]) == ("Infinity", "NaN")
    assert alert_row(Alert("s", 1.0, 2.0, float("-inf"), 1, "d"))["score"] == "-Infinity"


def test_a_pubsub_message_carries_the_json_and_filterable_attributes():
    message = to_pubsub_message(ALERT)
    assert alert_from_json(message.data) == ALERT
    assert message.attributes == {"sensor_id": "pump-7", "detector": "iforest"}


def test_a_rejected_row_becomes_a_dead_letter_with_the_errors():
    letter = rejected_row_dead_letter(("p:d.alerts", alert_row(ALERT), [{"reason": "invalid"}]))
    assert letter.source == "p:d.alerts" and json.loads(letter.raw)["sensor_id"] == "pump-7"
    assert letter.reason == "BigQuery rejected the alert: [{'reason': 'invalid'}]"


def test_file_names_carry_window_pane_and_shard_and_shards_are_stable():
    w = IntervalWindow(T0, T0 + 60)
    assert file_name(w, 0, 0, 1) == "alerts-20260101T000000Z-20260101T000100Z-pane-0-00000-of-00001.jsonl"
    assert file_name(w, 2, 1, 2).endswith("-pane-2-00001-of-00002.jsonl")
    assert file_name(GlobalWindow(), 0, 0, 1) == "alerts-global-pane-0-00000-of-00001.jsonl"
    assert keyed_json_line(ALERT, 4) == (2398649267 % 4, alert_to_json(ALERT))  # crc32, not the salted hash()


@pytest.mark.parametrize("kwargs, message", [
    ({}, "at least one of topic, table, files_dir"),
    ({"topic": "alerts"}, "topic 'alerts' is not projects/<project>/topics/<topic>"),
    ({"topic": "projects/p/subscriptions/s"}, "is not projects/<project>/topics/<topic>"),
    ({"table": "just_a_table"}, "table 'just_a_table'"),
    ({"files_dir": ""}, "files_dir must not be empty"),
    ({"files_dir": "/tmp/x", "file_window": 0}, "file_window must be > 0"),
    ({"files_dir": "/tmp/x", "allowed_lateness": -1}, "allowed_lateness must be >= 0"),
    ({"files_dir": "/tmp/x", "file_shards": 0}, "file_shards must be >= 1"),
])
def test_bad_arguments_are_refused_at_construction_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError) as error:
        WriteAlerts(**kwargs)
    assert message in str(error.value)


def test_valid_sinks_construct():
    WriteAlerts(topic="projects/my-project/topics/alerts", table="my-project:monitoring.alerts",
                files_dir="/tmp/alerts")
    WriteAlerts(table="monitoring.alerts")


def _alert(sensor, end):
    return Alert(sensor, end - 2, end, 150.0, 100.0, "test-threshold", None, ("temperature",))


def test_file_sink_writes_a_file_per_event_time_window_and_a_new_one_for_a_late_pane(tmp_path):
    """Streaming on the BundleBasedDirectRunner: alerts at event time window_end, files per 10 s window; an alert
    behind the watermark but within the allowed lateness fires a late pane into its own file."""
    stream = (TestStream()
              .advance_watermark_to(T0)
              .add_elements([beam.window.TimestampedValue(_alert("a", T0 + 3), T0 + 3),
                             beam.window.TimestampedValue(_alert("b", T0 + 4), T0 + 4),
                             beam.window.TimestampedValue(_alert("a", T0 + 12), T0 + 12)])
              .advance_watermark_to(T0 + 25)  # closes [0, 10) and [10, 20)
              .add_elements([beam.window.TimestampedValue(_alert("c", T0 + 8), T0 + 8)])  # late, within 30 s
              .advance_watermark_to_infinity())
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    out = str(tmp_path / "alerts")
    with beam.Pipeline(options=options) as p:
        _ = p | stream | WriteAlerts(files_dir=out, file_window=10, allowed_lateness=30)
    files = {os.path.basename(f): [alert_from_json(line) for line in open(f)]
             for f in glob.glob(os.path.join(out, "alerts-*.jsonl"))}
    start = datetime.datetime.fromtimestamp(T0, datetime.timezone.utc).strftime("%Y%m%dT%H%M")
    assert sorted(files) == [f"alerts-{start}00Z-{start}10Z-pane-0-00000-of-00001.jsonl",
                             f"alerts-{start}00Z-{start}10Z-pane-1-00000-of-00001.jsonl",
                             f"alerts-{start}10Z-{start}20Z-pane-0-00000-of-00001.jsonl"]
    by_window = [sorted((a.sensor_id, a.window_end - T0) for a in files[name]) for name in sorted(files)]
    assert by_window == [[("a", 3.0), ("b", 4.0)], [("c", 8.0)], [("a", 12.0)]]


def test_an_alert_that_cannot_be_a_bigquery_row_is_a_dead_letter_not_a_crash():
    from beam_ml.core.deadletter import DEAD_LETTER
    from beam_ml.stream.sinks import ToBigQueryRow
    fn = ToBigQueryRow("my-project:monitoring.alerts")
    assert list(fn.process(ALERT)) == [alert_row(ALERT)]
    [tagged] = list(fn.process(Alert("s", 1e12, 1e12, 1.0, 1.0, "d")))
    assert tagged.tag == DEAD_LETTER and tagged.value.source == "my-project:monitoring.alerts"
    assert tagged.value.reason == "not a BigQuery row: year 33658 is out of range"
    assert alert_from_json(tagged.value.raw).window_start == 1e12
