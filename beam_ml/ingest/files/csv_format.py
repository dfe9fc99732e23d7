"""CSV parsing into Arrow: the column format's inference from a header and a sample, and the chunk parser with exact
dead-lettering.

Data contract: a chunk of CSV bytes → one `ParsedChunk`: a `pa.RecordBatch` whose columns are `large_list<int64|
float32|large_binary>` (the layout TFXIO, TFDV and tf.Transform consume; a missing value is a null list) and one
`DeadLetter` per malformed line.

The fast path is one multi-threaded pyarrow parse per chunk. Only a chunk that pyarrow rejects, or whose row count
disagrees with its line count (a broken quote swallows following lines), is re-checked line by line, so each bad
line is named with its reason and the good lines still parse in bulk.
"""
from __future__ import annotations

import csv
import io
import re
from typing import Callable, Optional, Sequence

import numpy as np
import pyarrow as pa
from pyarrow import csv as pa_csv

from beam_ml.core.chunks import ParsedChunk
from beam_ml.core.deadletter import DeadLetter
from beam_ml.core.records import ARROW_TYPES, RecordFormat, to_list_array

_BLOCK_BYTES = 1 << 20  # pyarrow's default: small blocks parse in parallel and stay in cache
NULL_VALUES = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")


# What pyarrow's converters accept (checked in tests against pyarrow itself), used to name the bad value.
_VALUE_PATTERNS = {
    "int": re.compile(r"\s*-?(\d+|0[xX][0-9a-fA-F]+)\s*"),
    "float": re.compile(r"\s*-?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)\s*", re.IGNORECASE),
}


def parse_header(header: bytes, delimiter: str = ",") -> tuple[str, ...]:
    """Column names of a header line (quotes removed, as for any CSV row)."""
    return tuple(next(csv.reader([header.decode("utf-8").rstrip("\r\n")], delimiter=delimiter)))


def infer_csv_format(header: bytes, sample: bytes, column_types: dict[str, str], delimiter: str = ",") -> RecordFormat:
    """Column names from the header line; types from `column_types`, else inferred by pyarrow on the sample.

    A column pyarrow reads as int64 is 'int', as a floating type 'float'; anything else (text, dates, booleans,
    all-empty) is 'string'. Entries of `column_types` that are not in the header are ignored (callers check).
    """
    columns = parse_header(header, delimiter)
    inferred: dict[str, str] = {}
    body = sample[: sample.rfind(b"\n") + 1]
    if body.strip():
        table = pa_csv.read_csv(
            io.BytesIO(body),
            read_options=pa_csv.ReadOptions(column_names=list(columns)),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=lambda row: "skip",
                                              newlines_in_values=has_quoted_newline(body)),
            convert_options=pa_csv.ConvertOptions(null_values=list(NULL_VALUES), strings_can_be_null=True))
        for name, field_type in zip(table.column_names, table.schema.types):
            inferred[name] = ("int" if pa.types.is_integer(field_type) else
                              "float" if pa.types.is_floating(field_type) else "string")
    types = tuple(column_types.get(c) or inferred.get(c, "string") for c in columns)
    return RecordFormat(columns=columns, types=types, delimiter=delimiter)


def _parse_lines(data: bytes, lengths: np.ndarray, fmt: RecordFormat, multiline: bool = False) -> pa.Table:
    """Parses complete CSV records (no header) into a table of primitive columns; raises pa.ArrowInvalid unless
    every non-empty record became exactly one row. `lengths` are `record_lengths(data, multiline)`; `multiline`:
    quoted fields may hold newlines (RFC 4180)."""
    invalid: list[int] = []

    def on_invalid(row) -> str:
        invalid.append(row.number)
        return "skip"

    # pyarrow parses blocks in parallel, and fails on a line longer than a block.
    block_size = max(_BLOCK_BYTES, 2 * int(lengths.max()) + 2)
    table = pa_csv.read_csv(
        io.BytesIO(data),
        read_options=pa_csv.ReadOptions(column_names=list(fmt.columns), block_size=block_size),
        parse_options=pa_csv.ParseOptions(delimiter=fmt.delimiter, invalid_row_handler=on_invalid,
                                          newlines_in_values=multiline),
        convert_options=pa_csv.ConvertOptions(
            column_types={c: ARROW_TYPES[t] for c, t in zip(fmt.columns, fmt.types)},
            null_values=list(NULL_VALUES), strings_can_be_null=True, quoted_strings_can_be_null=False))
    expected_rows = np.count_nonzero(lengths)
    if invalid or table.num_rows != expected_rows:
        raise pa.ArrowInvalid(f"{len(invalid)} invalid rows, {table.num_rows} rows for {expected_rows} lines")
    return table


def record_lengths(data: bytes, multiline: bool = False) -> np.ndarray:
    """The length of each record of `data` (without its newline; the last is what follows the last newline),
    without building them: records are lines, or with `multiline` (RFC 4180) they end only at a newline outside
    quotes (an even number of quote characters before it; `data` starts at a record's start)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == ord("\n"))
    if multiline:
        quotes = np.cumsum(raw == ord('"'), dtype=np.int64)
        ends = ends[quotes[ends] % 2 == 0]
    return np.append(ends, len(data)) - np.concatenate(([0], ends + 1))


def has_quoted_newline(data: bytes) -> bool:
    """Whether `data` (starting at a record's start) holds a newline inside a quoted field, with its quotes balanced:
    CSV whose records span lines (RFC 4180). A stray quote unbalances them, and the data is read as lines."""
    return data.count(b'"') % 2 == 0 and quoted_newline_in(data, 0)


def quoted_newline_in(block: bytes, parity_before: int) -> bool:
    """Whether a newline of `block` lies between quotes, given the parity of the quotes before it: each stretch
    from an opening to its closing quote is checked for a newline (a search over the newlines' positions, not a
    byte-by-byte count)."""
    if b'"' not in block and not parity_before:
        return False
    raw = np.frombuffer(block, dtype=np.uint8)
    quotes = np.flatnonzero(raw == ord('"'))
    if parity_before:
        quotes = np.concatenate(([-1], quotes))  # a field opened before the block
    opens, closes = quotes[0::2], quotes[1::2]
    if len(closes) < len(opens):
        closes = np.append(closes, len(block))
    newlines = np.flatnonzero(raw == ord("\n"))
    return bool((np.searchsorted(newlines, closes) - np.searchsorted(newlines, opens)).any())


def _join(records: Sequence[bytes]) -> tuple[bytes, np.ndarray]:
    """The records as CSV data, and their lengths."""
    return b"\n".join(records) + b"\n", np.array([len(record) for record in records] + [0])


def line_problem(line: bytes, fmt: RecordFormat) -> Optional[str]:
    """Why one CSV record (a line, or lines joined inside quotes) cannot become a row of `fmt`, or None if it can."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not valid UTF-8: {e}"
    try:
        fields = next(csv.reader([text], delimiter=fmt.delimiter, strict=True))
    except csv.Error as e:
        return f"broken quoting: {e}"
    if len(fields) != len(fmt.columns):
        return f"expected {len(fmt.columns)} columns, got {len(fields)}"
    for column, kind, value in zip(fmt.columns, fmt.types, fields):
        pattern = _VALUE_PATTERNS.get(kind)
        if pattern and value not in NULL_VALUES and not pattern.fullmatch(value):
            return f"column {column!r}: cannot parse {value!r} as {kind}"
    return None


def parse_csv_chunk(data: bytes, fmt: RecordFormat, source: str,
                    first_line_number: Callable[[], int], multiline: bool = False) -> ParsedChunk:
    """Parses whole CSV records (no header) into a RecordBatch; malformed records become dead letters, named by the
    line they start on. Records are lines, or with `multiline` (RFC 4180) may span lines inside quoted fields.

    `first_line_number` is called only when a line must be named (it may have to count newlines in the file).
    """
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    lengths = record_lengths(data, multiline)
    dead: list[DeadLetter] = []
    try:
        table = _parse_lines(data, lengths, fmt, multiline) if lengths.any() else None
    except pa.ArrowInvalid:
        table, dead = _parse_slowly(data, lengths, fmt, source, first_line_number(), multiline)
    if table is None:
        batch = pa.RecordBatch.from_pylist([], schema=fmt.arrow_schema())
    else:
        columns = [to_list_array(col.combine_chunks()) for col in table.columns]
        batch = pa.RecordBatch.from_arrays(columns, schema=fmt.arrow_schema())
    return ParsedChunk(batch=batch, dead_letters=dead, records_read=batch.num_rows + len(dead))


def _parse_slowly(data: bytes, lengths: np.ndarray, fmt: RecordFormat, source: str, first_line: int,
                  multiline: bool):
    good: list[tuple[int, bytes]] = []
    dead: list[DeadLetter] = []
    start, number = 0, first_line
    for length in lengths:
        line = data[start:start + length]
        start += length + 1
        at = number
        number += line.count(b"\n") + 1  # a record spanning lines moves the count on by all of them
        line = line.rstrip(b"\r")
        if not line:
            continue
        problem = line_problem(line, fmt)
        if problem:
            dead.append(DeadLetter(source=source, line=at, raw=line.decode("utf-8", "replace"), reason=problem))
        else:
            good.append((at, line))
    try:
        table = _parse_lines(*_join([line for _, line in good]), fmt, multiline) if good else None
    except pa.ArrowInvalid:
        # The line checks and pyarrow disagree on some value: let pyarrow judge each record on its own.
        tables = []
        for number, line in good:
            try:
                tables.append(_parse_lines(*_join([line]), fmt, multiline))
            except pa.ArrowInvalid as e:
                dead.append(DeadLetter(source=source, line=number, raw=line.decode("utf-8", "replace"),
                                       reason=f"rejected by the CSV parser: {e}"))
        table = pa.concat_tables(tables) if tables else None
    return table, sorted(dead, key=lambda d: d.line)


# A column is "typed by a few odd values" when it holds at least this many values, and at most this share of them
# (and at most this many) are not numbers: inferred 'string' although nearly all of it is numeric.
DOUBT_MIN_VALUES = 20
DOUBT_MAX_SHARE = 0.05
DOUBT_MAX_SHOWN = 5


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def string_columns_in_doubt(sample: bytes, fmt: RecordFormat, inferred: Sequence[str],
                            first_line: int = 2) -> list[dict]:
    """Columns of `inferred` (typed by inference, not by the user) read as 'string' only because of a few values
    that are not numbers: [{column, numbers, odd_values: [{line, value}]}], from a CSV `sample` without its header
    (whose first line is file line `first_line`). A user who meant numbers fixes the data or sets column_types."""
    candidates = [i for i, (c, t) in enumerate(zip(fmt.columns, fmt.types)) if t == "string" and c in inferred]
    if not candidates:
        return []
    numbers = dict.fromkeys(candidates, 0)
    odd: dict[int, list[dict]] = {i: [] for i in candidates}
    reader = csv.reader(io.StringIO(sample.decode("utf-8", "replace")), delimiter=fmt.delimiter)
    for row in reader:
        line = first_line + reader.line_num - 1
        for i in candidates:
            value = row[i] if i < len(row) else ""
            if value in NULL_VALUES:
                continue
            if _is_number(value):
                numbers[i] += 1
            else:
                odd[i].append({"line": line, "value": value[:200]})
    doubts = []
    for i in candidates:
        total = numbers[i] + len(odd[i])
        if total >= DOUBT_MIN_VALUES and 0 < len(odd[i]) <= max(1, int(DOUBT_MAX_SHARE * total)):
            doubts.append({"column": fmt.columns[i], "numbers": numbers[i], "odd_values": odd[i][:DOUBT_MAX_SHOWN],
                           "odd_count": len(odd[i])})
    return doubts
