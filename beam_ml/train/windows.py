"""Fixed-length windows of each key's rows in time order: the records a sequence model trains and is judged on.

A window record has the same columns as the rows it is cut from: the key column holds the key once, every other
column the `length` values of its rows, oldest first. So the window records go through tf.Transform, TFMA and the
serving signature with the raw format unchanged (each column a list; `preprocessing_fn` sees `[batch, length]`).

Batch and streaming cut windows with one piece of logic (`beam_ml.core.windowing.release`): the batch pipeline groups a
key's rows and releases them all at once; the streaming job releases them as the watermark passes. A gap longer
than `max_gap` seconds, or a row with a missing value, starts a new window; duplicates (same key and time) are
dropped. Both are counted (namespace `beam_ml.windows`).
"""
from __future__ import annotations

import math
from typing import Iterable, Iterator, Sequence

import apache_beam as beam
import pyarrow as pa

from beam_ml.core.records import RecordFormat
from beam_ml.core.windowing import Reading, WindowSpec, release, windows_record_batch

METRICS_NAMESPACE = "beam_ml.windows"
WINDOWS_PER_BATCH = 1000


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


class WindowRows(beam.PTransform[beam.PCollection[pa.RecordBatch], beam.PCollection[pa.RecordBatch]]):
    """Ingest RecordBatches → window records (same format, each column a list of `length` rows' values).

    Example::

        spec = WindowSpec(key="sensor_id", time_key="timestamp", length=30, max_gap=600)
        train_windows = train_batches | WindowRows(spec, fmt)
    """

    def __init__(self, spec: WindowSpec, fmt: RecordFormat):
        super().__init__()
        self._spec = spec
        self._fmt = fmt

    def expand(self, batches: beam.PCollection[pa.RecordBatch]) -> beam.PCollection[pa.RecordBatch]:
        return (batches
                | "Readings" >> beam.ParDo(ReadingsOfBatch(self._spec, self._fmt))
                | "GroupByKey" >> beam.GroupByKey()
                | "Cut" >> beam.ParDo(CutWindows(self._spec, self._fmt)))
