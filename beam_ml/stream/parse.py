"""Telemetry messages → readings: the message contract of the streaming job.

A message (bytes, or a PubsubMessage whose `data` is parsed) is one JSON reading {"sensor_id": str, "timestamp":
unix seconds or ISO 8601, <channel>: number, ...} or a frame (a JSON array of readings, e.g. every sensor's reading
at one tick, as telemetry downlinks send them). A message with the attribute `heartbeat` carries no telemetry
(`tools/replay_telemetry.py` sends them so that a local runner's reader never waits on an empty subscription).

Data contract: `ParseTelemetry(channels)`: PCollection[bytes or PubsubMessage] → `ParsedTelemetry(readings:
PCollection[(sensor id, Reading)] timestamped with the reading's event time, dead_letter: PCollection[DeadLetter])`;
a message that is not JSON, and each invalid reading of a frame, is a dead letter with the reason (the frame's other
readings go on), counted as `invalid_messages` (namespace `beam_ml.streaming`).

No message can stop the job: whatever fails while a message is parsed (any exception, any size, numbers beyond float
range, nesting deeper than the JSON parser goes) makes a dead letter with the reason. Event times must lie in years
1 to 9999 (what every sink can write), and `MessageLimits` bounds a message's size, a frame's readings and a sensor
id's length (defaults: 1 MiB, 10,000 readings, 256 characters).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
from typing import NamedTuple, Sequence

import apache_beam as beam

from beam_ml.core.deadletter import DEAD_LETTER, DeadLetter
from beam_ml.core.times import parse_time
from beam_ml.core.windowing import Reading

METRICS_NAMESPACE = "beam_ml.streaming"


READINGS = "readings"  # the ParDo's main output tag (and `DEAD_LETTER`)
TIMESTAMP, SENSOR_ID = "timestamp", "sensor_id"  # the fields every reading has, besides its channels
HEARTBEAT = "heartbeat"  # message attribute marking a heartbeat (no telemetry)


# Event times every sink can write (BigQuery's TIMESTAMP, ISO 8601 file names): years 1 to 9999, UTC.
EARLIEST_EVENT_TIME = datetime.datetime(1, 1, 1, tzinfo=datetime.timezone.utc).timestamp()
LATEST_EVENT_TIME = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc).timestamp()


@dataclasses.dataclass(frozen=True)
class MessageLimits:
    """How big a telemetry message may be; beyond a limit it is a dead letter saying which, never an error.

    Args:
      max_bytes: a message's data (a Pub/Sub message may hold up to 10 MB).
      max_readings: readings in one frame.
      max_sensor_id: characters of a sensor id.
    """

    max_bytes: int = 1 << 20
    max_readings: int = 10_000
    max_sensor_id: int = 256

    def __post_init__(self):
        for name in ("max_bytes", "max_readings", "max_sensor_id"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


class ParsedTelemetry(NamedTuple):
    """What `ParseTelemetry` gives: the readings, keyed by sensor and at their event time, and the dead letters."""

    readings: beam.PCollection[tuple[str, Reading]]
    dead_letter: beam.PCollection[DeadLetter]


def message_records(message: bytes, limits: MessageLimits = MessageLimits()) -> list:
    """The JSON records of a message: one object, or a frame (an array of objects, e.g. every sensor's reading at
    one tick, as telemetry downlinks send them). Raises ValueError if the message is not JSON, is over a limit, or
    is an empty frame."""
    if not isinstance(message, (bytes, str)):
        raise ValueError(f"not bytes but {type(message).__name__}")
    if len(message) > limits.max_bytes:
        raise ValueError(f"a message of {len(message)} bytes is over the limit of {limits.max_bytes}")
    try:
        records = json.loads(message)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not JSON: {e}") from None
    except RecursionError:
        raise ValueError("not JSON this parser can read: nested too deeply") from None
    if isinstance(records, list):
        if not records:
            raise ValueError("an empty frame")
        if len(records) > limits.max_readings:
            raise ValueError(f"a frame of {len(records)} readings is over the limit of {limits.max_readings}")
        return records
    return [records]


def parse_record(record, channels: Sequence[str], limits: MessageLimits = MessageLimits()) -> Reading:
    """A JSON object {"sensor_id": str, "timestamp": unix seconds or ISO 8601, <channel>: number, ...} as a Reading
    with the channels in `channels` order. Raises ValueError naming what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object but {type(record).__name__}")
    sensor = record.get(SENSOR_ID)
    if not isinstance(sensor, str) or not sensor:
        raise ValueError("sensor_id is missing or not a non-empty string")
    if len(sensor) > limits.max_sensor_id:
        raise ValueError(f"sensor_id of {len(sensor)} characters is over the limit of {limits.max_sensor_id}")
    timestamp = _event_time(record.get(TIMESTAMP))
    values = []
    for channel in channels:
        value = record.get(channel)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"channel {channel!r} is {'missing' if value is None else _shown(value)}, not a number")
        values.append(_finite(value, f"channel {channel!r}"))
    unknown = set(record) - set(channels) - {SENSOR_ID, TIMESTAMP}
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    return Reading(sensor, timestamp, tuple(values))


def _event_time(value) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"timestamp {_shown(value)} is missing or neither unix seconds nor ISO 8601")
    seconds = _finite(value, "timestamp") if isinstance(value, (int, float)) else parse_time(value)
    if not EARLIEST_EVENT_TIME <= seconds <= LATEST_EVENT_TIME:
        raise ValueError(f"timestamp {_shown(value)} is outside years 1 to 9999")
    return seconds


def _finite(value, what: str) -> float:
    """A JSON number as a finite float; ValueError for one beyond float range, infinite or NaN."""
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{what} is beyond the range of a float") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} is {number}")
    return number


def _shown(value, limit: int = 80) -> str:
    """A value as a reason shows it: its repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class ParseTelemetryFn(beam.DoFn):
    """A message (bytes, or a PubsubMessage whose data is parsed; a heartbeat is skipped) → (sensor id, Reading) at
    the reading's event time, for each reading of the message; a dead letter with the reason for a message that is
    not JSON and for each invalid reading (the frame's others go on).

    One step from the Pub/Sub message to readings: the local runner's cost is per step and bundle, not per element."""

    def __init__(self, channels: Sequence[str], source: str, limits: MessageLimits = MessageLimits()):
        self._channels = tuple(channels)
        self._source = source
        self._limits = limits
        self._invalid = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "invalid_messages")

    def _dead_letter(self, raw, reason: str):
        self._invalid.inc()
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(self._source, 0, text, reason))

    def process(self, message):
        if is_heartbeat(message):
            return
        message = getattr(message, "data", message)
        try:
            records = message_records(message, self._limits)
        except Exception as e:  # whatever a message holds, it is a dead letter: one message must not stop the job
            yield self._dead_letter(message, _reason(e))
            return
        for i, record in enumerate(records):
            try:
                reading = parse_record(record, self._channels, self._limits)
            except Exception as e:
                where = f" (reading {i + 1} of a frame of {len(records)})" if len(records) > 1 else ""
                yield self._dead_letter(message if len(records) == 1 else _record_text(record, message),
                                        f"{_reason(e)}{where}")
                continue
            yield beam.window.TimestampedValue((reading.sensor_id, reading), reading.timestamp)


def _reason(error: Exception) -> str:
    """A dead letter's reason: a ValueError's message (it names what is wrong), else the exception's type too."""
    return str(error) if type(error) is ValueError else f"{type(error).__name__}: {error}"


def _record_text(record, message) -> str:
    """One reading of a frame as JSON, for its dead letter; the whole message when the reading cannot be written."""
    try:
        return json.dumps(record)
    except Exception:  # e.g. nested too deeply to write back
        return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)


class ParseTelemetry(beam.PTransform[beam.PCollection, ParsedTelemetry]):
    """Parses telemetry messages (bytes or PubsubMessages), each one reading or a frame of readings (a JSON array);
    heartbeats are skipped; a malformed message or invalid reading goes to "dead_letter" with the reason (counted as
    `invalid_messages`).

    Example::

        parsed = messages | ParseTelemetry(["temperature", "pressure"], source="projects/my-project/subscriptions/s")
        readings, dead = parsed.readings, parsed.dead_letter
    """

    def __init__(self, channels: Sequence[str], source: str = "pubsub", limits: MessageLimits = MessageLimits()):
        super().__init__()
        self._channels = tuple(channels)
        self._source = source
        self._limits = limits

    def expand(self, messages: beam.PCollection) -> ParsedTelemetry:
        # Typed so that the per-sensor state downstream gets a deterministic key coder.
        parse = beam.ParDo(ParseTelemetryFn(self._channels, self._source, self._limits)).with_output_types(
            beam.typehints.KV[str, Reading])
        parsed = messages | "Parse" >> parse.with_outputs(DEAD_LETTER, main=READINGS)
        return ParsedTelemetry(parsed[READINGS], parsed[DEAD_LETTER])


def is_heartbeat(message) -> bool:
    """True for a heartbeat (a PubsubMessage with the `heartbeat` attribute): drop it before parsing."""
    return bool((getattr(message, "attributes", None) or {}).get(HEARTBEAT))
