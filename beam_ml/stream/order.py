"""Each sensor's readings put in event-time order and cut into windows, in Beam state.

Data contract: `WindowPerSensor(length, stride, allowed_lateness, max_gap)`: PCollection[(sensor id, Reading)] →
`SensorWindows(windows: PCollection[SensorWindow], late: PCollection[Reading], duplicates: PCollection[Reading])`.

Beam does not deliver a key's elements in event-time order, so `OrderAndWindow` buffers each sensor's readings in
state and releases them, sorted, when the watermark has passed them by `allowed_lateness` (an event-time timer per
reading), cutting windows with `beam_ml.core.windowing.release`. A reading that arrives after its sensor has been
released past its timestamp (so the watermark had passed it by more than `allowed_lateness`) cannot be put in order
any more: it is late, goes to `late` and is counted. A reading behind the watermark that still comes after
everything its sensor has released keeps its place. The same sensor and timestamp twice is one reading: the copy
goes to `duplicates`, counted (a copy of a reading older than the current window counts as late). A gap longer than
`max_gap` seconds starts a new window, so no window spans missing data. A window is stamped with the time it was
released (its end plus `allowed_lateness`): downstream windows and sinks then see it on time.
"""
from __future__ import annotations

import math
from typing import Iterable, NamedTuple

import apache_beam as beam
from apache_beam.coders import FastPrimitivesCoder, FloatCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from beam_ml.core.windowing import Reading, SensorWindow, WindowState, release
from beam_ml.stream.parse import METRICS_NAMESPACE

# The ParDo's output tags (names of its outputs on a runner).
WINDOWS, LATE, DUPLICATES = "windows", "late", "duplicates"


class SensorWindows(NamedTuple):
    """What `WindowPerSensor` gives: the windows, and the readings that came too late or twice."""

    windows: beam.PCollection[SensorWindow]
    late: beam.PCollection[Reading]
    duplicates: beam.PCollection[Reading]


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


class WindowPerSensor(beam.PTransform[beam.PCollection[tuple[str, Reading]], SensorWindows]):
    """Orders each sensor's readings by event time and cuts them into windows; late readings and duplicates are
    separate outputs, counted (namespace `beam_ml.streaming`). `release_every` (seconds of event time) releases a
    sensor's readings in batches: one timer per span instead of one per reading, for at most that much more delay.

    Example::

        out = readings | WindowPerSensor(length=32, stride=1, allowed_lateness=10, max_gap=300)
        windows, late = out.windows, out.late
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

    def expand(self, readings: beam.PCollection[tuple[str, Reading]]) -> SensorWindows:
        out = readings | "OrderAndWindow" >> beam.ParDo(OrderAndWindow(*self._args)).with_outputs(
            LATE, DUPLICATES, main=WINDOWS)
        return SensorWindows(out[WINDOWS], out[LATE], out[DUPLICATES])
