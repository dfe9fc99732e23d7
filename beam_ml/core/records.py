"""The record layout every source produces, and its description.

A dataset is a `RecordFormat`: column names with types 'int' | 'float' | 'string'. Its rows travel as
`pa.RecordBatch`es whose columns are `large_list<int64 | float32 | large_binary>` holding 0 (missing) or 1 value per
row: the layout TFXIO, TFDV and tf.Transform consume.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tensorflow_metadata.proto.v0 import schema_pb2

from beam_ml.core.deadletter import DeadLetter

TYPES = ("int", "float", "string")
ARROW_TYPES = {"int": pa.int64(), "float": pa.float32(), "string": pa.large_binary()}
TFMD_TYPES = {"int": schema_pb2.INT, "float": schema_pb2.FLOAT, "string": schema_pb2.BYTES}


@dataclasses.dataclass(frozen=True)
class RecordFormat:
    """Column names and types ('int' | 'float' | 'string') of a dataset, whatever its source; `delimiter` applies
    to CSV sources."""

    columns: tuple[str, ...]
    types: tuple[str, ...]
    delimiter: str = ","

    def __post_init__(self):
        if len(self.columns) != len(self.types):
            raise ValueError("columns and types differ in length")
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"duplicate column names in {self.columns}")

    def type_of(self, column: str) -> str:
        return self.types[self.columns.index(column)]

    def arrow_schema(self) -> pa.Schema:
        """The schema of the RecordBatches the parser emits."""
        return pa.schema([(c, pa.large_list(ARROW_TYPES[t])) for c, t in zip(self.columns, self.types)])

    def tfmd_schema(self) -> schema_pb2.Schema:
        """A types-only TFMD schema: every feature optional and variable-length (a SparseTensor in tf.Transform)."""
        schema = schema_pb2.Schema()
        for column, kind in zip(self.columns, self.types):
            schema.feature.add(name=column, type=TFMD_TYPES[kind])
        return schema


def to_list_array(values: pa.Array) -> pa.Array:
    """Wraps each value in a one-element list; a null value becomes a null list (a missing feature)."""
    if values.null_count == 0:
        return pa.LargeListArray.from_arrays(pa.array(np.arange(len(values) + 1, dtype=np.int64)), values)
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(valid, out=offsets[1:])
    return pa.LargeListArray.from_arrays(pa.array(offsets), values.drop_null(), mask=pa.array(~valid))


class RecordBatchCoder(beam.coders.Coder):
    """A RecordBatch as an Arrow IPC stream (the encoding of the coder TFDV registers for `pa.RecordBatch`), whose
    size estimate is its buffers' size.

    Beam measures sampled elements of every PCollection (the first ten, so every batch of a run with few big
    batches) by encoding them unless the coder estimates: encoding a batch to measure it copies the whole batch.
    """

    def encode(self, batch: pa.RecordBatch) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        return sink.getvalue().to_pybytes()

    def decode(self, encoded: bytes) -> pa.RecordBatch:
        return pa.ipc.open_stream(encoded).read_next_batch()

    def estimate_size(self, batch: pa.RecordBatch) -> int:
        return batch.nbytes

    def to_type_hint(self):
        return pa.RecordBatch


def use_record_batch_coder() -> None:
    """Makes PCollections typed `pa.RecordBatch` use `RecordBatchCoder`. Called on import of this module and again
    after TensorFlow Data Validation's import, which registers TFDV's own."""
    beam.coders.registry.register_coder(pa.RecordBatch, RecordBatchCoder)

use_record_batch_coder()


def row_text(row: dict) -> str:
    """A record-layout row (`batch.to_pylist()`) as the JSON text of its values, for a dead letter."""
    return json.dumps({k: (v[0].decode(errors="replace") if isinstance(v[0], bytes) else v[0]) if v else None
                       for k, v in row.items()}, sort_keys=True, default=str)


def without_non_finite(batch: pa.RecordBatch,
                       allowed: Sequence[str] = ()) -> tuple[pa.RecordBatch, list[DeadLetter]]:
    """The batch less its rows holding an infinite or NaN float (a number beyond float32's range reads as infinite),
    and a dead letter naming the column for each: such a value would reach statistics, tf.Transform and training
    (one in a column skews its mean, and the model with it). A missing value is a null, not a NaN. Columns in
    `allowed` keep such values."""
    bad = np.zeros(batch.num_rows, dtype=bool)
    reasons: dict[int, str] = {}
    for name, column in zip(batch.schema.names, batch.columns):
        if name in allowed or not pa.types.is_floating(column.type.value_type):
            continue
        values = column.flatten()
        finite = pc.is_finite(values).to_numpy(zero_copy_only=False)
        if finite.all():
            continue
        rows = pc.list_parent_indices(column).to_numpy()[~finite]
        for row, value in zip(rows, values.to_numpy(zero_copy_only=False)[~finite]):
            reasons.setdefault(int(row), f"column {name!r} is {value}, not a finite float32")
        bad[rows] = True
    if not bad.any():
        return batch, []
    letters = [DeadLetter("values", 0, row_text(row), reasons[int(i)])
               for i, row in zip(np.flatnonzero(bad), batch.filter(pa.array(bad)).to_pylist())]
    return batch.filter(pa.array(~bad)), letters


def type_of_arrow(arrow_type: pa.DataType) -> str | None:
    """The record type an Arrow column of this type converts to (None if it does not)."""
    if pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_binary(arrow_type) \
            or pa.types.is_large_binary(arrow_type):
        return "string"
    return None


def to_record_batch(table: pa.Table, fmt: RecordFormat) -> pa.RecordBatch:
    """Flat columns (any Arrow types that `type_of_arrow` maps to the format's types) → the record layout."""
    columns = []
    for name, kind in zip(fmt.columns, fmt.types):
        values = table.column(name).combine_chunks()
        if pa.types.is_boolean(values.type):
            values = values.cast(pa.int8())
        columns.append(to_list_array(values.cast(ARROW_TYPES[kind])))
    return pa.RecordBatch.from_arrays(columns, schema=fmt.arrow_schema())
