"""Parquet into the record layout: each file's schema checked against the format when the graph is built, and row
groups read straight into RecordBatches (Arrow-native, no per-row conversion).

Parquet columns are typed, so there are no malformed rows: a missing column or a type that does not convert fails
the job at launch, naming the file and the column.
"""
from __future__ import annotations

from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_ml.core.chunks import ParsedChunk
from beam_ml.core.records import RecordFormat, to_record_batch, type_of_arrow

_COMPATIBLE = {"int": {"int"}, "float": {"float", "int"}, "string": {"string"}}


def _open(path: str):
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def parquet_schema(path: str) -> pa.Schema:
    with _open(path) as f:
        return pq.ParquetFile(f).schema_arrow


def row_group_count(path: str) -> int:
    with _open(path) as f:
        return pq.ParquetFile(f).num_row_groups


def infer_parquet_format(paths: Sequence[str], column_types: dict[str, str]) -> RecordFormat:
    """The first file's columns and types (overridden by `column_types`); every file must have each column with a
    type that converts to it. Raises ValueError naming the file and the column."""
    first = parquet_schema(paths[0])
    columns, types = [], []
    for field in first:
        kind = column_types.get(field.name) or type_of_arrow(field.type)
        if kind is None:
            raise ValueError(f"{paths[0]}: column {field.name!r} has type {field.type}, which is not an integer, "
                             f"floating point, string or binary type")
        columns.append(field.name)
        types.append(kind)
    fmt = RecordFormat(columns=tuple(columns), types=tuple(types))
    for path in paths:
        schema = first if path == paths[0] else parquet_schema(path)
        for column, kind in zip(fmt.columns, fmt.types):
            index = schema.get_field_index(column)
            if index < 0:
                raise ValueError(f"{path}: column {column!r} is missing (it is in {paths[0]})")
            found = type_of_arrow(schema.field(index).type)
            if found not in _COMPATIBLE[kind]:
                raise ValueError(f"{path}: column {column!r} has type {schema.field(index).type}, which does not "
                                 f"convert to {kind}")
    return fmt


def read_row_group(path: str, index: int, fmt: RecordFormat) -> ParsedChunk:
    with _open(path) as f:
        table = pq.ParquetFile(f).read_row_group(index, columns=list(fmt.columns))
    batch = to_record_batch(table, fmt)
    return ParsedChunk(batch=batch, dead_letters=[], records_read=batch.num_rows)
