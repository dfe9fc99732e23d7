"""Telemetry messages → readings: the message contract of the streaming job.

A message (bytes, or a PubsubMessage whose `data` is parsed) is one JSON reading {"sensor_id": str, "timestamp":
unix seconds or ISO 8601, <channel>: number, ...} or a frame (a JSON array of readings, e.g. every sensor's reading
at one tick, as telemetry downlinks send them). A message with the attribute `heartbeat` carries no telemetry
(`tools/replay_telemetry.py` sends them so that a local runner's reader never waits on an empty subscription).

Data contract: `ParseTelemetry(channels)`: PCollection[bytes or PubsubMessage] → `ParsedTelemetry(readings:
PCollection[(sensor id, Reading)] timestamped with the reading's event time, dead_letter: PCollection[DeadLetter])`;
a message that is not JSON, and each invalid reading of a frame, is a dead letter with the reason (the frame's other
readings go on), counted as `invalid_messages` (namespace `beam_ml.streaming`).
"""
from __future__ import annotations

import json
import math
from typing import NamedTuple, Sequence

import apache_beam as beam

from beam_ml.core.deadletter import DeadLetter
from beam_ml.core.times import parse_time
from beam_ml.core.windowing import Reading

METRICS_NAMESPACE = "beam_ml.streaming"


# The ParDo's output tags (names of its outputs on a runner).
READINGS, DEAD_LETTER = "readings", "dead_letter"
TIMESTAMP, SENSOR_ID = "timestamp", "sensor_id"  # the fields every reading has, besides its channels
HEARTBEAT = "heartbeat"  # message attribute marking a heartbeat (no telemetry)


class ParsedTelemetry(NamedTuple):
    """What `ParseTelemetry` gives: the readings, keyed by sensor and at their event time, and the dead letters."""

    readings: beam.PCollection[tuple[str, Reading]]
    dead_letter: beam.PCollection[DeadLetter]


def message_records(message: bytes) -> list:
    """The JSON records of a message: one object, or a frame (an array of objects, e.g. every sensor's reading at
    one tick, as telemetry downlinks send them). Raises ValueError if the message is not JSON or an empty frame."""
    try:
        records = json.loads(message)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not JSON: {e}") from None
    if isinstance(records, list):
        if not records:
            raise ValueError("an empty frame")
        return records
    return [records]


def parse_record(record, channels: Sequence[str]) -> Reading:
    """A JSON object {"sensor_id": str, "timestamp": unix seconds or ISO 8601, <channel>: number, ...} as a Reading
    with the channels in `channels` order. Raises ValueError naming what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object but {type(record).__name__}")
    sensor = record.get(SENSOR_ID)
    if not isinstance(sensor, str) or not sensor:
        raise ValueError("sensor_id is missing or not a non-empty string")
    timestamp = _event_time(record.get(TIMESTAMP))
    values = []
    for channel in channels:
        value = record.get(channel)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"channel {channel!r} is {'missing' if value is None else repr(value)}, not a number")
        if not math.isfinite(value):
            raise ValueError(f"channel {channel!r} is {value}")
        values.append(float(value))
    unknown = set(record) - set(channels) - {SENSOR_ID, TIMESTAMP}
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    return Reading(sensor, timestamp, tuple(values))


def _event_time(value) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"timestamp {value!r} is missing or neither unix seconds nor ISO 8601")
    seconds = parse_time(value)  # ValueError names the value
    if not math.isfinite(seconds):
        raise ValueError(f"timestamp is {value}")
    return seconds


class ParseTelemetryFn(beam.DoFn):
    """A message (bytes, or a PubsubMessage whose data is parsed; a heartbeat is skipped) → (sensor id, Reading) at
    the reading's event time, for each reading of the message; a dead letter with the reason for a message that is
    not JSON and for each invalid reading (the frame's others go on).

    One step from the Pub/Sub message to readings: the local runner's cost is per step and bundle, not per element."""

    def __init__(self, channels: Sequence[str], source: str):
        self._channels = tuple(channels)
        self._source = source
        self._invalid = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "invalid_messages")

    def _dead_letter(self, raw, reason: str):
        self._invalid.inc()
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        return beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(self._source, 0, text, reason))

    def process(self, message):
        if is_heartbeat(message):
            return
        message = getattr(message, "data", message)
        try:
            records = message_records(message)
        except ValueError as e:
            yield self._dead_letter(message, str(e))
            return
        for i, record in enumerate(records):
            try:
                reading = parse_record(record, self._channels)
            except ValueError as e:
                where = f" (reading {i + 1} of a frame of {len(records)})" if len(records) > 1 else ""
                yield self._dead_letter(message if len(records) == 1 else json.dumps(record), f"{e}{where}")
                continue
            yield beam.window.TimestampedValue((reading.sensor_id, reading), reading.timestamp)


class ParseTelemetry(beam.PTransform[beam.PCollection, ParsedTelemetry]):
    """Parses telemetry messages (bytes or PubsubMessages), each one reading or a frame of readings (a JSON array);
    heartbeats are skipped; a malformed message or invalid reading goes to "dead_letter" with the reason (counted as
    `invalid_messages`).

    Example::

        parsed = messages | ParseTelemetry(["temperature", "pressure"], source="projects/p/subscriptions/s")
        readings, dead = parsed.readings, parsed.dead_letter
    """

    def __init__(self, channels: Sequence[str], source: str = "pubsub"):
        super().__init__()
        self._channels = tuple(channels)
        self._source = source

    def expand(self, messages: beam.PCollection) -> ParsedTelemetry:
        # Typed so that the per-sensor state downstream gets a deterministic key coder.
        parse = beam.ParDo(ParseTelemetryFn(self._channels, self._source)).with_output_types(
            beam.typehints.KV[str, Reading])
        parsed = messages | "Parse" >> parse.with_outputs(DEAD_LETTER, main=READINGS)
        return ParsedTelemetry(parsed[READINGS], parsed[DEAD_LETTER])



def is_heartbeat(message) -> bool:
    """True for a heartbeat (a PubsubMessage with the `heartbeat` attribute): drop it before parsing."""
    return bool((getattr(message, "attributes", None) or {}).get(HEARTBEAT))
