"""Fixed-length windows of each key's rows in time order: the records a sequence model trains and is judged on.

A window record has the same columns as the rows it is cut from: the key column holds the key once, every other
column the `length` values of its rows, oldest first. So the window records go through tf.Transform, TFMA and the
serving signature with the raw format unchanged (each column a list; `preprocessing_fn` sees `[batch, length]`).

Batch and streaming cut windows with one piece of logic (`beam_ml.streaming.release`): the batch pipeline groups a
key's rows and releases them all at once; the streaming job releases them as the watermark passes. A gap longer
than `max_gap` seconds, or a row with a missing value, starts a new window; duplicates (same key and time) are
dropped. Both are counted (namespace `beam_ml.windows`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Iterator, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa

from beam_ml.records import ARROW_TYPES, RecordFormat
from beam_ml.streaming import Reading, SensorWindow, release

METRICS_NAMESPACE = "beam_ml.windows"
WINDOWS_PER_BATCH = 1000


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


def batch_readings(batch: pa.RecordBatch, spec: WindowSpec, columns: Sequence[str]) -> tuple[list[Reading], int]:
    """The rows of an ingest batch as Readings (values in `columns` order) and how many rows had a missing value."""
    names = (spec.key, spec.time_key, *columns)
    lists = [batch.column(batch.schema.get_field_index(name)).to_pylist() for name in names]
    readings, incomplete = [], 0
    for row in zip(*lists):
        if not all(row):  # a null or empty list: the value is missing
            incomplete += 1
            continue
        key, time, *values = (cell[0] for cell in row)
        readings.append(Reading(key.decode() if isinstance(key, bytes) else str(key), float(time), tuple(values)))
    return readings, incomplete


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


def serialized_windows(windows: Sequence[SensorWindow], fmt: RecordFormat, spec: WindowSpec) -> list[bytes]:
    """Window records as serialized tf.Examples: what the serving signature of a window model takes."""
    from tfx_bsl.coders import example_coder
    return example_coder.RecordBatchToExamplesEncoder().encode(windows_record_batch(windows, fmt, spec))


class ReadingsOfBatch(beam.DoFn):
    """Ingest RecordBatch → (key, Reading) per complete row; rows with a missing value are counted."""

    def __init__(self, spec: WindowSpec, fmt: RecordFormat):
        self._spec = spec
        self._columns = spec.value_columns(fmt)
        self._incomplete = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "incomplete_rows")

    def process(self, batch: pa.RecordBatch) -> Iterator[tuple[str, Reading]]:
        readings, incomplete = batch_readings(batch, self._spec, self._columns)
        self._incomplete.inc(incomplete)
        for reading in readings:
            yield reading.sensor_id, reading


class CutWindows(beam.DoFn):
    """(key, all its readings) → window RecordBatches of at most WINDOWS_PER_BATCH windows."""

    def __init__(self, spec: WindowSpec, fmt: RecordFormat):
        self._spec = spec
        self._fmt = fmt
        self._duplicates = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "duplicate_rows")
        self._gaps = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "gaps")

    def process(self, keyed: tuple[str, Iterable[Reading]]) -> Iterator[pa.RecordBatch]:
        _, readings = keyed
        spec = self._spec
        _, _, windows, duplicates, gaps = release(list(readings), None, math.inf, spec.length, spec.stride,
                                                  spec.max_gap)
        self._duplicates.inc(len(duplicates))
        self._gaps.inc(gaps)
        for start in range(0, len(windows), WINDOWS_PER_BATCH):
            yield windows_record_batch(windows[start:start + WINDOWS_PER_BATCH], self._fmt, spec)


class WindowRows(beam.PTransform):
    """Ingest RecordBatches → window records (same format, each column a list of `length` rows' values).

    Example::

        spec = WindowSpec(key="sensor_id", time_key="timestamp", length=30, max_gap=600)
        train_windows = train_batches | WindowRows(spec, fmt)
    """

    def __init__(self, spec: WindowSpec, fmt: RecordFormat):
        super().__init__()
        self._spec = spec
        self._fmt = fmt

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        return (batches
                | "Readings" >> beam.ParDo(ReadingsOfBatch(self._spec, self._fmt))
                | "GroupByKey" >> beam.GroupByKey()
                | "Cut" >> beam.ParDo(CutWindows(self._spec, self._fmt)))
