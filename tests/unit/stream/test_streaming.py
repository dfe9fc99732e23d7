"""Streaming telemetry: parsing, and per-sensor event-time ordering and windowing on a TestStream."""
import json

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to

from beam_ml.core.windowing import Reading, release
from beam_ml.stream.order import WindowPerSensor
from beam_ml.stream.parse import ParseTelemetry, message_records, parse_record

CHANNELS = ("temperature", "pressure")


def _message(sensor="s1", timestamp=100.0, **channels) -> bytes:
    return json.dumps({"sensor_id": sensor, "timestamp": timestamp,
                       **({"temperature": 1.0, "pressure": 2.0} | channels)}).encode()


def test_a_message_parses_into_a_reading_with_channels_in_order():
    assert parse_message(_message(pressure=5, temperature=-1.5)) == [Reading("s1", 100.0, (-1.5, 5.0))]
    iso = json.dumps({"sensor_id": "s2", "timestamp": "2026-01-01T00:00:10Z", "temperature": 1, "pressure": 2})
    assert parse_message(iso.encode())[0].timestamp == 1767225610.0
    frame = b"[" + _message("a") + b"," + _message("b", 101.0) + b"]"
    assert [(r.sensor_id, r.timestamp) for r in parse_message(frame)] == [("a", 100.0), ("b", 101.0)]


def parse_message(message: bytes) -> list:
    return [parse_record(record, CHANNELS) for record in message_records(message)]


@pytest.mark.parametrize("message, reason", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object but int"),
    (b"[]", "an empty frame"),
    (json.dumps({"timestamp": 1, "temperature": 1, "pressure": 2}).encode(), "sensor_id"),
    (_message(timestamp=None), "timestamp None is missing"),
    (_message(timestamp="yesterday"), "'yesterday' is neither"),
    (_message(pressure="high"), "channel 'pressure' is 'high', not a number"),
    (_message(pressure=True), "channel 'pressure' is True"),
    (json.dumps({"sensor_id": "s", "timestamp": 1, "temperature": 1}).encode(), "'pressure' is missing"),
    (b'{"sensor_id": "s", "timestamp": 1, "temperature": NaN, "pressure": 2}', "'temperature' is nan"),
    (_message(humidity=3), "unknown fields ['humidity']"),
    (b"\xff\xfe", "not JSON"),
])
def test_an_invalid_message_is_refused_with_the_reason(message, reason):
    with pytest.raises(ValueError, match=None) as error:
        parse_message(message)
    assert reason in str(error.value)


def test_a_frame_gives_its_valid_readings_and_dead_letters_each_invalid_one():
    bad = {"sensor_id": "b", "timestamp": 5, "temperature": "hot", "pressure": 1.0}
    frame = b"[" + _message("a") + b"," + json.dumps(bad).encode() + b"," + _message("c") + b"]"
    with TestPipeline() as p:
        parsed = p | beam.Create([frame, b"{not json"]) | ParseTelemetry(CHANNELS, source="sub")
        assert_that(parsed.readings | beam.Map(lambda kv: kv[0]), equal_to(["a", "c"]), label="Readings")
        assert_that(parsed.dead_letter | beam.Map(lambda d: (d.raw, d.reason.split(":")[0])), equal_to([
            (json.dumps(bad), "channel 'temperature' is 'hot', not a number (reading 2 of a frame of 3)"),
            ("{not json", "not JSON")]), label="DeadLetters")


def test_pubsub_messages_are_parsed_in_the_same_step_and_heartbeats_skipped():
    from apache_beam.io.gcp.pubsub import PubsubMessage
    messages = [PubsubMessage(_message("a"), {"published_at": "1.0"}), PubsubMessage(b"", {"heartbeat": "1"}),
                PubsubMessage(b"{not json", None)]
    with TestPipeline() as p:
        parsed = p | beam.Create(messages) | ParseTelemetry(CHANNELS, source="sub")
        assert_that(parsed.readings | beam.Map(lambda kv: kv[0]), equal_to(["a"]), label="Readings")
        assert_that(parsed.dead_letter | beam.Map(lambda d: (d.raw, d.reason.split(":")[0])),
                    equal_to([("{not json", "not JSON")]), label="DeadLetters")


def _r(t, sensor="s1", value=0.0):
    return Reading(sensor, float(t), (float(value), float(t)))


def test_release_orders_deduplicates_windows_with_stride_and_restarts_after_a_gap():
    pending = [_r(3), _r(1), _r(2), _r(2, value=9), _r(4), _r(30), _r(31), _r(9)]
    waiting, state, windows, duplicates, gaps = release(pending, None, cutoff=30, length=2, stride=2, max_gap=10)
    assert waiting == [_r(31)]
    assert [w.timestamps for w in windows] == [(1.0, 2.0), (3.0, 4.0)]
    assert windows[0].values == ((0.0, 1.0), (0.0, 2.0))  # the first copy of t=2 is kept
    assert duplicates == [_r(2, value=9)] and gaps == 1  # 9 → 30 is more than max_gap: a new window starts at 30
    assert [r.timestamp for r in state.recent] == [30.0] and state.since_emitted == 1

    waiting, state, windows, duplicates, gaps = release(waiting, state, cutoff=40, length=2, stride=2, max_gap=10)
    assert waiting == [] and [w.timestamps for w in windows] == [(30.0, 31.0)] and not duplicates and not gaps


def _stream_options():
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return options


def test_readings_are_ordered_per_sensor_by_event_time_with_late_duplicate_and_invalid_ones_set_apart():
    def msg(sensor, t):
        return _message(sensor, t, temperature=float(t), pressure=0.0)

    stream = (TestStream()
              .advance_watermark_to(0)
              .add_elements([msg("a", 3), msg("a", 1), msg("b", 1), msg("a", 2)])  # out of order
              .add_elements([msg("a", 2), b"garbage"])  # a duplicate while pending, a malformed message
              .advance_watermark_to(4)
              .add_elements([msg("a", 4), msg("b", 2)])
              .advance_watermark_to(10)  # releases a up to 4 and b up to 2 (each reading 5 s after its time)
              .add_elements([msg("a", 1), msg("a", 6), msg("b", 4), msg("a", 4)])  # a@1 late, a@4 a duplicate
              .advance_watermark_to(20)
              # b@3 is late (b was released up to 4); a@7 is behind the watermark but after all of a's released
              # readings, so it still has its place in order
              .add_elements([msg("a", 7), msg("b", 3)])
              .advance_watermark_to_infinity())
    p = TestPipeline(options=_stream_options())
    parsed = p | stream | ParseTelemetry(CHANNELS, source="test")
    out = parsed.readings | WindowPerSensor(length=2, stride=1, allowed_lateness=5)
    windows = out.windows | "Describe" >> beam.Map(lambda w: (w.sensor_id, w.timestamps))
    assert_that(windows, equal_to([("a", (1.0, 2.0)), ("a", (2.0, 3.0)), ("a", (3.0, 4.0)), ("a", (4.0, 6.0)),
                                   ("a", (6.0, 7.0)), ("b", (1.0, 2.0)), ("b", (2.0, 4.0))]), label="Windows")
    assert_that(out.late | "Late" >> beam.Map(lambda r: (r.sensor_id, r.timestamp)),
                equal_to([("a", 1.0), ("b", 3.0)]), label="Late")
    assert_that(out.duplicates | "Dups" >> beam.Map(lambda r: (r.sensor_id, r.timestamp)),
                equal_to([("a", 2.0), ("a", 4.0)]), label="Duplicates")
    assert_that(parsed.dead_letter | "Reasons" >> beam.Map(lambda d: d.reason.split(":")[0]),
                equal_to(["not JSON"]), label="DeadLetters")
    p.run().wait_until_finish()


def test_release_every_batches_a_sensors_releases_without_changing_order_or_lateness():
    def msg(t):
        return _message("a", t, temperature=float(t), pressure=0.0)

    stream = (TestStream()
              .advance_watermark_to(0)
              .add_elements([msg(1.7), msg(1.2), msg(2.4)])
              .advance_watermark_to(3)  # one timer at 2 releases 1.2 and 1.7 together, one at 3 releases 2.4
              .add_elements([msg(1.9), msg(3.5)])  # 1.9: released past already, late
              .advance_watermark_to(5)  # (output of timers that fire only on the jump to infinity is dropped)
              .advance_watermark_to_infinity())
    p = TestPipeline(options=_stream_options())
    readings = (p | stream | ParseTelemetry(CHANNELS, source="test")).readings
    out = readings | WindowPerSensor(length=2, stride=1, release_every=1.0)
    assert_that(out.windows | "Describe" >> beam.Map(lambda w: w.timestamps),
                equal_to([(1.2, 1.7), (1.7, 2.4), (2.4, 3.5)]), label="Windows")
    assert_that(out.late | "Late" >> beam.Map(lambda r: r.timestamp), equal_to([1.9]), label="Late")
    p.run().wait_until_finish()
