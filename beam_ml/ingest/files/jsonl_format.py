"""JSON Lines parsing into the record layout: format inference from a sample, and the chunk parser with exact
dead-lettering (the same contract as `csv_format.parse_csv_chunk`).

Each line is one JSON object; keys are columns, a missing key or null is a missing value. Values must have their
column's JSON type (an int column takes integers, a float column numbers, a string column strings); anything else
is a dead letter with its line number and reason. The fast path is one pyarrow parse per chunk; a chunk it rejects
is checked line by line.
"""
from __future__ import annotations

import io
import json
from typing import Callable, Optional

import pyarrow as pa
from pyarrow import json as pa_json

from beam_ml.core.chunks import ParsedChunk
from beam_ml.core.deadletter import DeadLetter
from beam_ml.core.records import RecordFormat, to_record_batch

_FLAT_TYPES = {"int": pa.int64(), "float": pa.float64(), "string": pa.string()}
_JSON_TYPE_NAMES = {"int": "integer", "float": "number", "string": "string"}


def infer_jsonl_format(sample: bytes, column_types: dict[str, str]) -> RecordFormat:
    """Columns in order of first appearance in the sample's objects. Types from `column_types`, else from the
    sample's values: int if every value is an integer, float if every value is a number, string otherwise. Lines
    that are not JSON objects are skipped here (they become dead letters when read)."""
    body = sample[: sample.rfind(b"\n") + 1] if b"\n" in sample else sample
    seen: dict[str, set] = {}
    for line in body.splitlines():
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError:
            continue
        if isinstance(record, dict):
            for column, value in record.items():
                kinds = seen.setdefault(column, set())
                if value is not None:
                    kinds.add("bool" if isinstance(value, bool) else type(value).__name__)
    inferred = {column: "int" if kinds <= {"int"} and kinds else "float" if kinds and kinds <= {"int", "float"}
                else "string" for column, kinds in seen.items()}
    return RecordFormat(columns=tuple(seen), types=tuple(column_types.get(c) or inferred[c] for c in seen))


def line_problem(line: bytes, fmt: RecordFormat) -> Optional[str]:
    """Why one JSON line cannot become a row of `fmt`, or None if it can."""
    try:
        record = json.loads(line)
    except ValueError as e:
        return f"not valid JSON: {e}"
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    for column, kind in zip(fmt.columns, fmt.types):
        value = record.get(column)
        if value is None:
            continue
        ok = (isinstance(value, int) and not isinstance(value, bool) if kind == "int" else
              isinstance(value, (int, float)) and not isinstance(value, bool) if kind == "float" else
              isinstance(value, str))
        if not ok:
            return f"column {column!r}: {value!r} is not a JSON {_JSON_TYPE_NAMES[kind]}"
    return None


def _parse(data: bytes, fmt: RecordFormat) -> pa.Table:
    schema = pa.schema([(c, _FLAT_TYPES[t]) for c, t in zip(fmt.columns, fmt.types)])
    return pa_json.read_json(io.BytesIO(data), parse_options=pa_json.ParseOptions(
        explicit_schema=schema, unexpected_field_behavior="ignore"))


def parse_jsonl_chunk(data: bytes, fmt: RecordFormat, source: str,
                      first_line_number: Callable[[], int]) -> ParsedChunk:
    """Parses whole JSON lines into a RecordBatch; malformed lines become dead letters."""
    lines = data.split(b"\n")
    records = sum(1 for line in lines if line.strip())
    dead: list[DeadLetter] = []
    table = None
    if records:
        try:
            table = _parse(data, fmt)
            if table.num_rows != records:
                raise pa.ArrowInvalid(f"{table.num_rows} rows for {records} lines")
        except pa.ArrowInvalid:
            good = []
            for number, line in enumerate(lines, start=first_line_number()):
                if not line.strip():
                    continue
                problem = line_problem(line, fmt)
                if problem:
                    dead.append(DeadLetter(source=source, line=number, raw=line.decode("utf-8", "replace"),
                                           reason=problem))
                else:
                    good.append(line)
            table = _parse(b"\n".join(good) + b"\n", fmt) if good else None
    if table is None:
        batch = pa.RecordBatch.from_pylist([], schema=fmt.arrow_schema())
    else:
        batch = to_record_batch(table, fmt)
    return ParsedChunk(batch=batch, dead_letters=dead, records_read=batch.num_rows + len(dead))
