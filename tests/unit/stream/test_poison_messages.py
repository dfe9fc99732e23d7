"""No message stops the streaming job: whatever a message holds, parsing gives readings or dead letters, never an
error (issue 22: numbers beyond float range, nesting deeper than the JSON parser goes, event times outside Beam's
and the sinks' range, oversized messages and frames)."""
import json
import math

import apache_beam as beam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam_ml.core.deadletter import DEAD_LETTER, DeadLetter
from beam_ml.core.windowing import Reading
from beam_ml.stream.parse import EARLIEST_EVENT_TIME, LATEST_EVENT_TIME, MessageLimits, ParseTelemetryFn

CHANNELS = ("temperature", "pressure")
LIMITS = MessageLimits(max_bytes=4096, max_readings=20, max_sensor_id=16)


def parse(message) -> tuple[list[Reading], list[DeadLetter]]:
    """The readings and dead letters of one message, by calling the DoFn as a runner would."""
    readings, dead = [], []
    for out in ParseTelemetryFn(CHANNELS, "test", LIMITS).process(message):
        if isinstance(out, beam.pvalue.TaggedOutput):
            assert out.tag == DEAD_LETTER and isinstance(out.value, DeadLetter) and out.value.reason
            dead.append(out.value)
        else:
            sensor, reading = out.value
            assert sensor == reading.sensor_id and out.timestamp.micros == int(round(reading.timestamp * 1e6))
            readings.append(reading)
    return readings, dead


def check_accounted(message, readings, dead) -> None:
    """Every reading of a message is accounted for once: a frame of n readings gives n outputs (readings and dead
    letters), anything else one; a whole message refused is one dead letter."""
    try:
        decoded = json.loads(message)
    except Exception:
        decoded = None
    frame = isinstance(decoded, list) and 0 < len(decoded) <= LIMITS.max_readings and len(message) <= LIMITS.max_bytes
    assert len(readings) + len(dead) == (len(decoded) if frame else 1)
    for reading in readings:
        assert all(math.isfinite(v) for v in reading.values) and len(reading.values) == len(CHANNELS)
        assert EARLIEST_EVENT_TIME <= reading.timestamp <= LATEST_EVENT_TIME


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10 ** 400), max_value=10 ** 400)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
readings = st.fixed_dictionaries(
    {"sensor_id": st.one_of(st.text(max_size=20), json_values),
     "timestamp": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10 ** 30), 10 ** 30),
                            st.datetimes().map(lambda d: d.isoformat()), json_values)},
    optional={"temperature": st.one_of(st.floats(), st.integers(-(10 ** 400), 10 ** 400), json_values),
              "pressure": st.one_of(st.floats(), json_values), "extra": json_values})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_a_reading_or_a_dead_letter(message):
    readings, dead = parse(message)
    check_accounted(message, readings, dead)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, readings, st.lists(readings, min_size=1, max_size=25)))
def test_arbitrary_json_readings_and_frames_are_each_a_reading_or_a_dead_letter(value):
    message = json.dumps(value).encode()
    readings_, dead = parse(message)
    check_accounted(message, readings_, dead)


@pytest.mark.parametrize("message, reason", [
    (b'{"sensor_id": "s", "timestamp": 1e400, "temperature": 1, "pressure": 2}', "timestamp is inf"),
    (b'{"sensor_id": "s", "timestamp": 1' + b"0" * 400 + b', "temperature": 1, "pressure": 2}',
     "timestamp is beyond the range of a float"),
    (b'{"sensor_id": "s", "timestamp": 1e18, "temperature": 1, "pressure": 2}', "outside years 1 to 9999"),
    (b'{"sensor_id": "s", "timestamp": -1e13, "temperature": 1, "pressure": 2}', "outside years 1 to 9999"),
    (b'{"sensor_id": "s", "timestamp": 10, "temperature": 1' + b"0" * 400 + b', "pressure": 2}',
     "channel 'temperature' is beyond the range of a float"),
    (b"[" * 100_000 + b"]" * 100_000, "over the limit of 4096"),
    (b"[" * 2000 + b"]" * 2000, "nested too deeply"),
    (b'{"sensor_id": "' + b"s" * 17 + b'", "timestamp": 10, "temperature": 1, "pressure": 2}',
     "sensor_id of 17 characters is over the limit of 16"),
    (json.dumps([{"sensor_id": "s", "timestamp": 10, "temperature": 1, "pressure": 2}] * 21).encode(),
     "a frame of 21 readings is over the limit of 20"),
], ids=["time-inf", "time-beyond-float", "time-after-9999", "time-before-1", "channel-beyond-float", "oversized",
        "nested", "long-sensor-id", "long-frame"])
def test_poison_messages_are_dead_letters_naming_why(message, reason):
    readings, dead = parse(message)
    assert readings == [] and len(dead) == 1 and reason in dead[0].reason, dead[0].reason
    assert dead[0].raw == message.decode()  # nothing is lost: the message as it came


def test_a_frame_keeps_its_good_readings_beside_a_poison_one():
    frame = [{"sensor_id": "a", "timestamp": 10, "temperature": 1, "pressure": 2},
             {"sensor_id": "b", "timestamp": 1e300, "temperature": 1, "pressure": 2},
             {"sensor_id": "c", "timestamp": 11, "temperature": 1, "pressure": 2}]
    readings, dead = parse(json.dumps(frame).encode())
    assert [r.sensor_id for r in readings] == ["a", "c"]
    assert [d.reason for d in dead] == ["timestamp 1e+300 is outside years 1 to 9999 (reading 2 of a frame of 3)"]


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_readings must be >= 1"):
        MessageLimits(max_readings=0)
