"""Streaming telemetry: parse messages, put each sensor's readings in event-time order, cut them into windows.

Data contract:
  * `ParseTelemetry(channels)`: PCollection[bytes or PubsubMessage] (one JSON message each; heartbeats are
    skipped) → {"readings": PCollection[(sensor id, Reading)] timestamped with the reading's event time,
    "dead_letter": PCollection[DeadLetter]}.
  * `WindowPerSensor(length, stride, allowed_lateness, max_gap)`: PCollection[(sensor id, Reading)] →
    {"windows": PCollection[SensorWindow], "late": PCollection[Reading], "duplicates": PCollection[Reading]}.

Beam does not deliver a key's elements in event-time order, so `OrderAndWindow` buffers each sensor's readings in
state and releases them, sorted, when the watermark has passed them by `allowed_lateness` (an event-time timer per
reading). A reading that arrives after its sensor has been released past its timestamp (so the watermark had passed
it by more than `allowed_lateness`) cannot be put in order any more: it is late, goes to "late" and is counted. A
reading behind the watermark that still comes after everything its sensor has released keeps its place. The same
sensor and timestamp twice is one reading: the copy goes to "duplicates", counted (a copy of a reading older than the
current window counts as late). A gap longer than `max_gap` seconds starts a new window, so no window spans missing
data. A window is stamped with the time it was released (its end plus `allowed_lateness`): downstream windows and
sinks then see it on time.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Iterable, Optional, Sequence

import apache_beam as beam
from apache_beam.coders import FastPrimitivesCoder, FloatCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from beam_ml.config import parse_time
from beam_ml.deadletter import DeadLetter
from beam_ml.replay import is_heartbeat

METRICS_NAMESPACE = "beam_ml.streaming"
READINGS, DEAD_LETTER = "readings", "dead_letter"
WINDOWS, LATE, DUPLICATES = "windows", "late", "duplicates"


@dataclasses.dataclass(frozen=True)
class Reading:
    """One sensor's channel values at one event time (unix seconds)."""

    sensor_id: str
    timestamp: float
    values: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class SensorWindow:
    """`length` consecutive readings of one sensor, oldest first: `values[i]` is the channels at `timestamps[i]`."""

    sensor_id: str
    timestamps: tuple[float, ...]
    values: tuple[tuple[float, ...], ...]

    @property
    def start(self) -> float:
        return self.timestamps[0]

    @property
    def end(self) -> float:
        return self.timestamps[-1]


@dataclasses.dataclass(frozen=True)
class Alert:
    """A window whose anomaly score reached its threshold: what every alert sink writes.

    `detector` names what scored it (a model: its name; an online detector: e.g. "zscore"); `model_version` is the
    pushed model version directory (None for online detectors); `top_channels` lists the channels that contributed
    most to the score, largest first."""

    sensor_id: str
    window_start: float
    window_end: float
    score: float
    threshold: float
    detector: str
    model_version: Optional[str] = None
    top_channels: tuple[str, ...] = ()


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
    sensor = record.get("sensor_id")
    if not isinstance(sensor, str) or not sensor:
        raise ValueError("sensor_id is missing or not a non-empty string")
    timestamp = _event_time(record.get("timestamp"))
    values = []
    for channel in channels:
        value = record.get(channel)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"channel {channel!r} is {'missing' if value is None else repr(value)}, not a number")
        if not math.isfinite(value):
            raise ValueError(f"channel {channel!r} is {value}")
        values.append(float(value))
    unknown = set(record) - set(channels) - {"sensor_id", "timestamp"}
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


class ParseTelemetry(beam.PTransform):
    """Parses telemetry messages (bytes or PubsubMessages), each one reading or a frame of readings (a JSON array);
    heartbeats are skipped; a malformed message or invalid reading goes to "dead_letter" with the reason (counted as
    `invalid_messages`).

    Example::

        parsed = messages | ParseTelemetry(["temperature", "pressure"], source="projects/p/subscriptions/s")
        readings, dead = parsed["readings"], parsed["dead_letter"]
    """

    def __init__(self, channels: Sequence[str], source: str = "pubsub"):
        super().__init__()
        self._channels = tuple(channels)
        self._source = source

    def expand(self, messages: beam.PCollection) -> dict[str, beam.PCollection]:
        # Typed so that the per-sensor state downstream gets a deterministic key coder.
        parse = beam.ParDo(ParseTelemetryFn(self._channels, self._source)).with_output_types(
            beam.typehints.KV[str, Reading])
        parsed = messages | "Parse" >> parse.with_outputs(DEAD_LETTER, main=READINGS)
        return {READINGS: parsed[READINGS], DEAD_LETTER: parsed[DEAD_LETTER]}


@dataclasses.dataclass
class WindowState:
    """What one sensor has released so far: the readings of its current (partial) window and how many readings
    since the last window was emitted."""

    recent: list
    since_emitted: int = 0


def release(pending: Iterable[Reading], state: Optional[WindowState], cutoff: float, length: int, stride: int,
            max_gap: float) -> tuple[list[Reading], WindowState, list[SensorWindow], list[Reading], int]:
    """Releases the pending readings at or before `cutoff` in event-time order.

    Returns (still pending, new state, windows to emit, duplicates, gaps). The logic of `OrderAndWindow`, without
    Beam, so it can be tested alone."""
    state = state or WindowState(recent=[])
    ready = sorted((r for r in pending if r.timestamp <= cutoff), key=lambda r: r.timestamp)
    waiting = [r for r in pending if r.timestamp > cutoff]
    windows, duplicates, gaps = [], [], 0
    recent, since = list(state.recent), state.since_emitted
    for reading in ready:
        if recent and reading.timestamp == recent[-1].timestamp:
            duplicates.append(reading)
            continue
        if recent and reading.timestamp - recent[-1].timestamp > max_gap:
            recent, since, gaps = [], 0, gaps + 1
        recent = (recent + [reading])[-length:]
        since += 1
        if len(recent) == length and since >= stride:
            windows.append(SensorWindow(reading.sensor_id, tuple(r.timestamp for r in recent),
                                        tuple(r.values for r in recent)))
            since = 0
    return waiting, WindowState(recent, since), windows, duplicates, gaps


def _stored(readings: Iterable[Reading]) -> tuple:
    """Readings as plain tuples (timestamp, values), which Beam's primitive coder writes without pickling."""
    return tuple((r.timestamp, r.values) for r in readings)


def _readings(sensor: str, stored: Iterable[tuple]) -> list[Reading]:
    return [Reading(sensor, timestamp, tuple(values)) for timestamp, values in stored]


class OrderAndWindow(beam.DoFn):
    """Keyed by sensor: buffers readings, releases them in event-time order once the watermark is `allowed_lateness`
    past them, and emits a window of `length` readings every `stride` readings (see the module docstring)."""

    # State holds plain tuples and floats: the primitive coder is much cheaper than pickling per reading.
    PENDING = BagStateSpec("pending", FastPrimitivesCoder())  # (timestamp, values) per reading
    STATE = ReadModifyWriteStateSpec("window", FastPrimitivesCoder())  # (since emitted, recent readings)
    RELEASED_UP_TO = ReadModifyWriteStateSpec("released_up_to", FloatCoder())
    NEXT_RELEASE = ReadModifyWriteStateSpec("next_release", FloatCoder())
    RELEASE = TimerSpec("release", TimeDomain.WATERMARK)

    def __init__(self, length: int, stride: int, allowed_lateness: float, max_gap: float, release_every: float = 0.0):
        self._length, self._stride = length, stride
        self._lateness, self._max_gap, self._release_every = allowed_lateness, max_gap, release_every
        self._late = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "late_readings")
        self._duplicates = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "duplicate_readings")
        self._gaps = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "gaps")
        self._windows = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "windows")

    def process(self, element, pending=beam.DoFn.StateParam(PENDING),
                released_up_to=beam.DoFn.StateParam(RELEASED_UP_TO),
                window_state=beam.DoFn.StateParam(STATE),
                next_release=beam.DoFn.StateParam(NEXT_RELEASE), timer=beam.DoFn.TimerParam(RELEASE)):
        _, reading = element
        released = released_up_to.read()
        if released is not None and reading.timestamp <= released:
            stored = window_state.read()
            if stored and any(timestamp == reading.timestamp for timestamp, _ in stored[1]):
                self._duplicates.inc()
                yield beam.pvalue.TaggedOutput(DUPLICATES, reading)
            else:
                self._late.inc()
                yield beam.pvalue.TaggedOutput(LATE, reading)
            return
        pending.add((reading.timestamp, reading.values))
        release_at = self._release_time(reading.timestamp)
        scheduled = next_release.read()
        if scheduled is None or release_at < scheduled:
            timer.set(Timestamp.of(release_at))
            next_release.write(release_at)

    def _release_time(self, timestamp: float) -> float:
        """When a reading can be released: `allowed_lateness` after it, rounded up to a multiple of
        `release_every` so that one timer releases all of a sensor's readings of that span (0: no rounding)."""
        release_at = timestamp + self._lateness
        if self._release_every:
            release_at = math.ceil(release_at / self._release_every) * self._release_every
        return release_at

    @on_timer(RELEASE)
    def on_release(self, sensor=beam.DoFn.KeyParam, fired=beam.DoFn.TimestampParam,
                   pending=beam.DoFn.StateParam(PENDING), released_up_to=beam.DoFn.StateParam(RELEASED_UP_TO),
                   window_state=beam.DoFn.StateParam(STATE),
                   next_release=beam.DoFn.StateParam(NEXT_RELEASE), timer=beam.DoFn.TimerParam(RELEASE)):
        cutoff = float(fired) - self._lateness
        stored = window_state.read()
        state = WindowState(_readings(sensor, stored[1]), stored[0]) if stored else None
        waiting, state, windows, duplicates, gaps = release(
            _readings(sensor, pending.read()), state, cutoff, self._length, self._stride, self._max_gap)
        pending.clear()
        for reading in _stored(waiting):
            pending.add(reading)
        window_state.write((state.since_emitted, _stored(state.recent)))
        previous = released_up_to.read()
        released_up_to.write(cutoff if previous is None else max(previous, cutoff))
        self._gaps.inc(gaps)
        self._windows.inc(len(windows))
        self._duplicates.inc(len(duplicates))
        for reading in duplicates:
            yield beam.pvalue.TaggedOutput(DUPLICATES, reading)
        for window in windows:  # stamped when released, so downstream windows and sinks do not see them as late
            yield beam.window.TimestampedValue(window, fired)
        if waiting:
            release_at = self._release_time(min(r.timestamp for r in waiting))
            timer.set(Timestamp.of(release_at))
            next_release.write(release_at)
        else:
            next_release.clear()


class WindowPerSensor(beam.PTransform):
    """Orders each sensor's readings by event time and cuts them into windows; late readings and duplicates are
    separate outputs, counted (namespace `beam_ml.streaming`). `release_every` (seconds of event time) releases a
    sensor's readings in batches: one timer per span instead of one per reading, for at most that much more delay.

    Example::

        out = readings | WindowPerSensor(length=32, stride=1, allowed_lateness=10, max_gap=300)
        windows, late = out["windows"], out["late"]
    """

    def __init__(self, length: int, stride: int = 1, allowed_lateness: float = 0.0, max_gap: float = math.inf,
                 release_every: float = 0.0):
        super().__init__()
        if length < 1 or stride < 1:
            raise ValueError(f"window length and stride must be >= 1, got {length} and {stride}")
        if allowed_lateness < 0 or max_gap <= 0:
            raise ValueError("allowed_lateness must be >= 0 and max_gap > 0")
        if release_every < 0:
            raise ValueError("release_every must be >= 0")
        self._args = (length, stride, allowed_lateness, max_gap, release_every)

    def expand(self, readings: beam.PCollection) -> dict[str, beam.PCollection]:
        out = readings | "OrderAndWindow" >> beam.ParDo(OrderAndWindow(*self._args)).with_outputs(
            LATE, DUPLICATES, main=WINDOWS)
        return {WINDOWS: out[WINDOWS], LATE: out[LATE], DUPLICATES: out[DUPLICATES]}
