"""How a key's rows become windows: the one algorithm that batch training (`beam_ml.train.windows`) and the
streaming job (`beam_ml.stream.order`) both use, and the types it works on.

* `Reading`: one sensor's (key's) channel values at one event time; `SensorWindow`: `length` consecutive readings.
* `release(pending, state, cutoff, ...)`: releases the readings at or before `cutoff` in event-time order into
  windows of `length` readings, a new one every `stride`; a gap longer than `max_gap` seconds starts over, so no
  window spans missing data; the same time twice is one reading (the copy is a duplicate). Pure Python, no Beam.
* `WindowSpec`: how rows become windows (key and time columns, length, stride, gap limit); a window model carries it.
* `windows_record_batch`: windows as records of the raw format (each column a list of `length` values), so they go
  through tf.Transform, TFMA and the serving signature unchanged.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Optional, Sequence

import numpy as np
import pyarrow as pa

from beam_ml.core.records import ARROW_TYPES, RecordFormat


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


@dataclasses.dataclass(frozen=True)
class WindowSpec:
    """How rows become windows: `key` and `time_key` (unix seconds, int) columns; `length` rows per window, a new
    window every `stride` rows; a gap of more than `max_gap` seconds restarts."""

    key: str
    time_key: str
    length: int
    stride: int = 1
    max_gap: float = math.inf

    def to_dict(self) -> dict:
        """As JSON-ready fields (no gap limit: max_gap None), the form a window model carries."""
        return {"key": self.key, "time_key": self.time_key, "length": self.length, "stride": self.stride,
                "max_gap": None if math.isinf(self.max_gap) else self.max_gap}

    @classmethod
    def from_dict(cls, fields: dict) -> "WindowSpec":
        max_gap = fields.get("max_gap")
        return cls(fields["key"], fields["time_key"], int(fields["length"]), int(fields.get("stride", 1)),
                   math.inf if max_gap is None else float(max_gap))

    def value_columns(self, fmt: RecordFormat) -> tuple[str, ...]:
        """The columns a window holds `length` values of, besides time: all but key and time, in format order."""
        return tuple(c for c in fmt.columns if c not in (self.key, self.time_key))


def windows_record_batch(windows: Sequence[SensorWindow], fmt: RecordFormat, spec: WindowSpec) -> pa.RecordBatch:
    """Window records in `fmt`'s layout (see the module docstring). `window.values[i]` holds the values of
    `spec.value_columns(fmt)` (with or without the label: a column missing from the windows is left out)."""
    value_columns = spec.value_columns(fmt)
    n, length = len(windows), spec.length
    long_offsets = pa.array(np.arange(0, n * length + 1, length, dtype=np.int64))
    arrays, fields = [], []
    for name, kind in zip(fmt.columns, fmt.types):
        if name == spec.key:
            values = pa.array([w.sensor_id.encode() for w in windows], ARROW_TYPES[kind]) if kind == "string" \
                else pa.array([int(w.sensor_id) for w in windows], ARROW_TYPES[kind])
            array = pa.LargeListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int64)), values)
        elif name == spec.time_key:
            array = pa.LargeListArray.from_arrays(
                long_offsets, pa.array([int(t) for w in windows for t in w.timestamps], ARROW_TYPES[kind]))
        elif name in value_columns and (not windows or value_columns.index(name) < len(windows[0].values[0])):
            index = value_columns.index(name)
            flat = [row[index] for w in windows for row in w.values]
            if kind == "string":
                flat = [v if isinstance(v, bytes) else str(v).encode() for v in flat]
            array = pa.LargeListArray.from_arrays(long_offsets, pa.array(flat, ARROW_TYPES[kind]))
        else:
            continue
        arrays.append(array)
        fields.append(pa.field(name, array.type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
