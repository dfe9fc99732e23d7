"""Telemetry replay without Pub/Sub: CSV rows → messages ParseTelemetry accepts, the pacing schedule, the publish
loop on a fake clock, and option errors naming the option. Publishing to the emulator is in
test_pubsub_streaming.py."""
import json

import pytest

from beam_ml.core.windowing import Reading
from beam_ml.stream.parse import is_heartbeat, parse_record
from tools.replay_telemetry import (
    PUBLISHED_AT,
    ReplayConfig,
    ReplayError,
    encode,
    event_time,
    pace,
    publish_messages,
    read_rows,
    resolve_channels,
    row_to_message,
)

TOPIC = "projects/test-project/topics/telemetry"
CSV = """timestamp,sensor_id,temperature,pressure,is_anomaly
100,pump-1,20.5,1.0,0
101.5,pump-2,21,1.1,1
2026-01-01T00:00:10Z,pump-1,NA,,0
"""


@pytest.fixture
def telemetry_csv(tmp_path):
    path = tmp_path / "telemetry.csv"
    path.write_text(CSV)
    return str(path)


def test_rows_become_messages_that_parse_telemetry_reads_and_labels_are_dropped(telemetry_csv):
    messages = list(read_rows(telemetry_csv))
    assert messages[0] == {"sensor_id": "pump-1", "timestamp": 100, "temperature": 20.5, "pressure": 1.0}
    assert messages[1] == {"sensor_id": "pump-2", "timestamp": 101.5, "temperature": 21, "pressure": 1.1}
    channels = ("temperature", "pressure")
    assert parse_record(json.loads(encode(messages[1])), channels) == Reading("pump-2", 101.5, (21.0, 1.1))
    # Bad cells are replayed as they are (the pipeline dead-letters them with the reason), not dropped here.
    assert messages[2] == {"sensor_id": "pump-1", "timestamp": "2026-01-01T00:00:10Z", "temperature": "NA",
                           "pressure": None}
    with pytest.raises(ValueError, match="'temperature' is 'NA'"):
        parse_record(json.loads(encode(messages[2])), channels)
    assert [event_time(m) for m in messages] == [100.0, 101.5, 1767225610.0]


def test_channels_limit_and_a_file_wide_sensor_id(tmp_path):
    path = tmp_path / "nab.csv"
    path.write_text("timestamp,value\n2014-04-01 00:00:00,3.5\n2014-04-01 00:05:00,4\n2014-04-01 00:10:00,5\n")
    messages = list(read_rows(str(path), sensor_id="nab-1", limit=2))
    assert messages == [{"sensor_id": "nab-1", "timestamp": "2014-04-01 00:00:00", "value": 3.5},
                        {"sensor_id": "nab-1", "timestamp": "2014-04-01 00:05:00", "value": 4}]
    assert event_time(messages[1]) - event_time(messages[0]) == 300
    assert row_to_message({"timestamp": "1", "sensor_id": "s", "a": "1e3", "b": "inf"}, ["b", "a"]) == {
        "sensor_id": "s", "timestamp": 1, "b": "inf", "a": 1000.0}


@pytest.mark.parametrize("header, channels, sensor_id, message", [
    (["sensor_id", "x"], None, None, "--csv: the header ['sensor_id', 'x'] has no 'timestamp' column"),
    (["timestamp", "x"], None, None, "--sensor_id: the header ['timestamp', 'x'] has no 'sensor_id' column"),
    (["timestamp", "sensor_id", "is_anomaly"], None, None, "--channels: the header"),
    (["timestamp", "sensor_id", "x"], ["x", "y"], None, "--channels: ['y'] not in the CSV header"),
])
def test_a_header_that_does_not_fit_names_the_option(header, channels, sensor_id, message):
    with pytest.raises(ReplayError) as error:
        resolve_channels(header, channels, sensor_id=sensor_id)
    assert str(error.value).startswith(message)


def test_channels_default_to_all_but_keys_and_labels_and_can_be_chosen():
    header = ["timestamp", "sensor_id", "a", "label", "b", "is_anomaly"]
    assert resolve_channels(header, None) == ("a", "b")
    assert resolve_channels(header, ["b", "label"]) == ("b", "label")
    assert resolve_channels(header, None, label_columns=()) == ("a", "label", "b", "is_anomaly")


def test_pace_by_rate_speedup_or_as_fast_as_possible():
    times = [100.0, 160.0, 130.0, None, 400.0]
    assert list(pace(times, rate=4)) == [0.0, 0.25, 0.5, 0.75, 1.0]
    # 60x: a minute of event time per second; an older event or one without a time goes right after the previous
    assert list(pace(times, speedup=60)) == [0.0, 1.0, 1.0, 1.0, 5.0]
    assert list(pace(times)) == [0.0] * 5
    with pytest.raises(ValueError):
        list(pace(times, rate=1, speedup=1))


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(round(seconds, 6))
        self.now += seconds


class FakeFuture:
    def __init__(self, error=None):
        self._error = error

    def add_done_callback(self, callback):
        callback(self)

    def exception(self):
        return self._error


class RecordingPublisher:
    """Stands in for PublisherClient.publish (the real client against the emulator is tested elsewhere)."""

    def __init__(self, clock, fail_at=()):
        self.clock, self.fail_at, self.sent = clock, set(fail_at), []

    def publish(self, topic, data, **attributes):
        self.sent.append((topic, json.loads(data), attributes, self.clock()))
        return FakeFuture(RuntimeError("boom") if len(self.sent) - 1 in self.fail_at else None)


def test_publish_loop_follows_the_schedule_and_stamps_published_at():
    clock = FakeClock()
    publisher = RecordingPublisher(clock, fail_at={1})
    messages = [{"sensor_id": "s", "timestamp": t, "x": 1} for t in (0, 30, 30, 120)]
    result = publish_messages(publisher, TOPIC, iter(messages), speedup=30, clock=clock, sleep=clock.sleep)
    assert [round(s[3] - 1000.0, 6) for s in publisher.sent] == [0.0, 1.0, 1.0, 4.0]
    assert clock.slept == [1.0, 3.0]
    assert [s[1] for s in publisher.sent] == messages
    assert all(s[2] == {PUBLISHED_AT: repr(s[3])} for s in publisher.sent)
    assert (result.published, result.failed, result.first_error) == (3, 1, "RuntimeError('boom')")


def test_readings_sharing_a_timestamp_go_out_as_frames_of_at_most_frame_size():
    clock = FakeClock()
    publisher = RecordingPublisher(clock)
    messages = [{"sensor_id": s, "timestamp": t, "x": 1} for t in (0, 10) for s in "abc"] + \
        [{"sensor_id": "a", "timestamp": 20, "x": 1}]
    result = publish_messages(publisher, TOPIC, iter(messages), rate=1.0, clock=clock, sleep=clock.sleep,
                              frame_size=2)
    assert [s[1] for s in publisher.sent] == [messages[0:2], messages[2], messages[3:5], messages[5], messages[6]]
    # A frame goes out when its last reading is due (rate counts readings).
    assert [round(s[3] - 1000.0, 6) for s in publisher.sent] == [1.0, 2.0, 4.0, 5.0, 6.0]
    assert result.published == 5


@pytest.mark.parametrize("kwargs, message", [
    ({"topic": "telemetry"}, "--topic: 'telemetry' is not projects/<project>/topics/<topic>"),
    ({"rate": 10, "speedup": 60}, "--rate: give --rate"),
    ({"rate": 0}, "--rate: must be a positive number"),
    ({"speedup": float("nan")}, "--speedup: must be a positive number"),
    ({"limit": 0}, "--limit: must be >= 1"),
    ({"frame_size": 0}, "--frame_size: must be >= 1"),
    ({"channels": ()}, "--channels: must name at least one column"),
    ({"channels": ("a", "a")}, "--channels: names a column twice"),
    ({"channels": ("timestamp",)}, "--channels: timestamp and sensor_id are not channels"),
    ({"sensor_id": ""}, "--sensor_id: must not be empty"),
])
def test_bad_settings_are_refused_naming_the_option(kwargs, message):
    with pytest.raises(ReplayError) as error:
        ReplayConfig(**{"csv_path": "t.csv", "topic": TOPIC, **kwargs})
    assert str(error.value).startswith(message)


def test_the_cli_reports_bad_options_by_name(capsys, tmp_path):
    from tools.replay_telemetry import main
    with pytest.raises(SystemExit) as exit_:
        main(["--csv", "t.csv", "--topic", TOPIC, "--rate", "5", "--speedup", "60"])
    assert exit_.value.code == 2 and "argument --speedup: not allowed with argument --rate" in capsys.readouterr().err
    (tmp_path / "t.csv").write_text("timestamp,x\n1,2\n")
    assert main(["--csv", str(tmp_path / "t.csv"), "--topic", TOPIC]) == 2
    assert "error: --sensor_id: the header ['timestamp', 'x'] has no 'sensor_id' column" in capsys.readouterr().err
    assert main(["--csv", str(tmp_path / "missing.csv"), "--topic", TOPIC]) == 2
    assert "error: --csv: cannot open" in capsys.readouterr().err


def test_heartbeats_are_recognised_by_their_attribute():
    from apache_beam.io.gcp.pubsub import PubsubMessage
    assert is_heartbeat(PubsubMessage(b"", {"heartbeat": "1"}))
    assert not is_heartbeat(PubsubMessage(b"{}", {"published_at": "1.0"}))
    assert not is_heartbeat(PubsubMessage(b"{}", None))
