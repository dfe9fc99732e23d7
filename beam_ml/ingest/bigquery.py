"""BigQuery as a source: a table or a standard SQL query read with Beam's own `ReadFromBigQuery`, converted into
the record layout.

Data contract: `PBegin → PCollection[ParsedChunk]`. Each chunk is one `pa.RecordBatch` of up to `BATCH_ROWS` rows
(columns `large_list<int64 | float32 | large_binary>`, a NULL is a missing value), the rows whose values do not
convert to their column's record type as `DeadLetter`s (`source="bigquery:<table or 'query'>"`, `line=0`, the row
as JSON), and `records_read` = rows in = `batch.num_rows + len(dead_letters)`.

The record format comes from BigQuery's schema when the graph is built (a table's schema, or a query's result
schema from a dry run): INTEGER/INT64/BOOLEAN/BOOL → int, FLOAT/FLOAT64/NUMERIC/BIGNUMERIC → float,
STRING/BYTES → string, DATE/DATETIME/TIMESTAMP/TIME → string (ISO 8601 text). REPEATED and RECORD columns are
rejected; `column_types` overrides a column's type, and values that then do not convert are dead letters.

A query may select spans with TFX's placeholders (`bind_span_placeholders`).

What the job must pass (Beam reads these from the pipeline options, not from this transform):
  * DIRECT_READ (the default) of a table: nothing beyond credentials.
  * DIRECT_READ of a query: `--project`. Beam runs the query into a temporary dataset `beam_temp_dataset_*` it
    creates in that project (the job needs `bigquery.datasets.create` there) and deletes it afterwards only when
    `--project` is set, so `ReadBigQuery` refuses to build without it.
  * EXPORT: `--temp_location=gs://...`, where BigQuery extracts the table (or the query's result) as Avro.
"""
from __future__ import annotations

import base64
import datetime
import decimal
import functools
import json
import re
from typing import Any, Collection, Iterable, Mapping, Optional, Sequence

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import GoogleCloudOptions
from google.api_core import exceptions
from google.cloud import bigquery

from beam_ml.core.chunks import ParsedChunk
from beam_ml.core.deadletter import DeadLetter
from beam_ml.core.records import ARROW_TYPES, TYPES, RecordFormat, to_list_array
from beam_ml.ingest import spans
from beam_ml.ingest.source import Source
from beam_ml.ingest.spans import query_span_placeholders

SPAN_PLACEHOLDERS = tuple(f"@{name}" for name in spans.QUERY_SPAN_PARAMETERS)
METHODS = ("DIRECT_READ", "EXPORT")
BATCH_ROWS = 10_000
RECORD_TYPES = {
    "INTEGER": "int", "INT64": "int", "BOOLEAN": "int", "BOOL": "int",
    "FLOAT": "float", "FLOAT64": "float", "NUMERIC": "float", "BIGNUMERIC": "float",
    "STRING": "string", "BYTES": "string",
    "DATE": "string", "DATETIME": "string", "TIMESTAMP": "string", "TIME": "string",
}


_NESTED_TYPES = ("RECORD", "STRUCT")
_PROJECT = r"(?:[a-z][a-z0-9.-]*:)?[a-z][a-z0-9-]*"  # optionally domain-scoped: example.com:my-project
_TABLE = r"(?P<dataset>\w+)\.(?P<table>[^.\s`]+)"
_SPEC = re.compile(rf"^bigquery:(?P<project>{_PROJECT})(?:[.:]{_TABLE})?$")
_TABLE_ID = re.compile(rf"^(?:(?P<project>{_PROJECT})[.:])?{_TABLE}$")
_INT_TEXT = re.compile(r"\s*[+-]?[0-9]+\s*")
_FLOAT_TEXT = re.compile(r"\s*[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|inf|infinity|nan)\s*", re.I)
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def bind_span_placeholders(query: str, span_begin: int, span_end: int) -> str:
    """Fills TFX's span placeholders for the UTC days `span_begin`..`span_end` (inclusive; a span is a day counted
    from 1970-01-01), as TFX's QueryBasedExampleGen does for one span (`example_gen.utils.get_query_for_span`):

      * `@span_begin_timestamp`: the first second of `span_begin`, unix seconds (`span_begin * 86400`);
      * `@span_end_timestamp`: the first second *after* `span_end` (`(span_end + 1) * 86400`), an exclusive bound;
      * `@span_yyyymmdd_utc`: the day of `span_begin` as a quoted string literal, `'YYYYMMDD'`.

    The values are generated numbers and dates, never user text.

        bind_span_placeholders("SELECT * FROM t WHERE ts >= @span_begin_timestamp AND ts < @span_end_timestamp", 2, 3)
        # -> "SELECT * FROM t WHERE ts >= 172800 AND ts < 345600"
    """
    if not 0 <= span_begin <= span_end:
        raise ValueError(f"span range {span_begin}-{span_end}: need 0 <= first span <= last span")
    values = spans.query_span_values(span_begin, span_end)
    literals = {"@span_begin_timestamp": str(values["span_begin_timestamp"]),
                "@span_end_timestamp": str(values["span_end_timestamp"]),
                "@span_yyyymmdd_utc": f"'{values['span_yyyymmdd_utc']}'"}
    return spans.QUERY_SPAN_PLACEHOLDER.sub(lambda m: literals[m.group(0)], query)


def parse_spec(spec: str) -> tuple[str, Optional[str]]:
    """`bigquery:PROJECT`, `bigquery:PROJECT.DATASET.TABLE` or `bigquery:PROJECT:DATASET.TABLE` → (project,
    `PROJECT.DATASET.TABLE` or None)."""
    match = _SPEC.match(spec)
    if not match:
        raise ValueError(f"{spec!r}: give bigquery:PROJECT or bigquery:PROJECT.DATASET.TABLE")
    project = match.group("project")
    table = f"{project}.{match.group('dataset')}.{match.group('table')}" if match.group("table") else None
    return project, table


def qualify_table(table: str, project: str) -> str:
    """`DATASET.TABLE` (in `project`), `PROJECT.DATASET.TABLE` or `PROJECT:DATASET.TABLE` → `PROJECT.DATASET.TABLE`."""
    match = _TABLE_ID.match(table)
    if not match:
        raise ValueError(f"table {table!r}: give DATASET.TABLE or PROJECT.DATASET.TABLE")
    return f"{match.group('project') or project}.{match.group('dataset')}.{match.group('table')}"


def schema_to_format(fields: Sequence, column_types: Mapping[str, str], origin: str) -> RecordFormat:
    """BigQuery schema fields (`google.cloud.bigquery.SchemaField`) → the record format, `column_types` overriding.

    Raises ValueError naming `origin` and the column for a REPEATED or RECORD column, a BigQuery type with no
    record type (GEOGRAPHY, JSON, INTERVAL...) that `column_types` does not override, or an override that is not
    one of 'int', 'float', 'string'.
    """
    columns, types = [], []
    for field in fields:
        if field.mode == "REPEATED" or field.field_type in _NESTED_TYPES:
            raise ValueError(f"{origin}: column {field.name!r} is {field.mode} {field.field_type}; only flat, "
                             f"non-repeated columns can be read (select or flatten them in a query)")
        kind = column_types.get(field.name) or RECORD_TYPES.get(field.field_type)
        if kind is None:
            raise ValueError(f"{origin}: column {field.name!r} has BigQuery type {field.field_type}, which maps to "
                             f"no record type; give it one in column_types (e.g. {{{field.name!r}: 'string'}})")
        if kind not in TYPES:
            raise ValueError(f"column_types: {field.name!r} is {kind!r}, not one of {TYPES}")
        columns.append(field.name)
        types.append(kind)
    if not columns:
        raise ValueError(f"{origin}: no columns")
    return RecordFormat(columns=tuple(columns), types=tuple(types))


def to_int(value: Any) -> int:
    """A BigQuery value as an int64; raises ValueError if it is not a whole number in range."""
    if isinstance(value, bool):
        number = int(value)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, decimal.Decimal) and value.is_finite() and value == value.to_integral_value():
        number = int(value)
    elif isinstance(value, str) and _INT_TEXT.fullmatch(value):
        number = int(value)
    else:
        raise ValueError(f"{value!r} is not an integer")
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise ValueError(f"{value!r} is out of the int64 range")
    return number


def to_float(value: Any) -> float:
    """A BigQuery value as a float (stored as float32, as pyarrow casts it); raises ValueError if not a number."""
    if isinstance(value, (bool, int, float, decimal.Decimal)):
        return float(value)
    if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value):
        return float(value)
    raise ValueError(f"{value!r} is not a number")


def to_text(value: Any, civil_datetime: bool = False) -> bytes:
    """A BigQuery value as string bytes: text as UTF-8, BYTES unchanged, dates and times as ISO 8601, numbers as
    BigQuery prints them. `civil_datetime` marks a DATETIME column (no time zone): Avro readers give it as text,
    but some (bqemulator) as a UTC datetime, which then loses its zone so both give the same text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, (int, float)):
        return repr(value).encode("ascii")
    if isinstance(value, decimal.Decimal):
        return format(value.normalize(), "f").encode("ascii")
    if isinstance(value, datetime.datetime) and civil_datetime:
        return value.replace(tzinfo=None).isoformat().encode("ascii")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat().encode("ascii")
    raise ValueError(f"a {type(value).__name__} value has no text form")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")  # BigQuery's JSON form of BYTES
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


def row_json(row: Mapping[str, Any]) -> str:
    """A row as JSON text, for a dead letter's `raw`."""
    return json.dumps(dict(row), default=_json_default)


def rows_to_chunk(rows: Sequence[Mapping[str, Any]], fmt: RecordFormat, source: str,
                  civil_datetime_columns: Collection[str] = ()) -> ParsedChunk:
    """Row dicts (as `ReadFromBigQuery` emits them) → one ParsedChunk: the rows whose every value converts, as a
    RecordBatch built column by column, and one dead letter per other row, naming its first bad column.

    A missing key or None is a missing value. Example::

        rows_to_chunk([{"id": 1, "day": datetime.date(2024, 3, 1)}, {"id": "x"}],
                      RecordFormat(("id", "day"), ("int", "string")), "bigquery:p.d.t")
        # -> 1 row (id=1, day=b"2024-03-01"), 1 dead letter ("column 'id': 'x' is not an integer"), records_read=2
    """
    values: dict[str, list] = {}
    problems: dict[int, str] = {}
    for column, kind in zip(fmt.columns, fmt.types):
        convert = (functools.partial(to_text, civil_datetime=column in civil_datetime_columns)
                   if kind == "string" else to_int if kind == "int" else to_float)
        converted = []
        for index, row in enumerate(rows):
            value = row.get(column)
            if value is not None:
                try:
                    value = convert(value)
                except ValueError as e:
                    problems.setdefault(index, f"column {column!r}: {e}")
                    value = None
            converted.append(value)
        values[column] = converted
    if problems:
        keep = [i for i in range(len(rows)) if i not in problems]
        values = {column: [column_values[i] for i in keep] for column, column_values in values.items()}
    arrays = [to_list_array(pa.array(values[column], type=ARROW_TYPES[kind]))
              for column, kind in zip(fmt.columns, fmt.types)]
    batch = pa.RecordBatch.from_arrays(arrays, schema=fmt.arrow_schema())
    dead = [DeadLetter(source=source, line=0, raw=row_json(rows[i]), reason=problems[i]) for i in sorted(problems)]
    return ParsedChunk(batch=batch, dead_letters=dead, records_read=len(rows))


class ReadBigQuery(beam.PTransform[beam.pvalue.PBegin, beam.PCollection[ParsedChunk]]):
    """`PBegin → PCollection[ParsedChunk]`: a table (`PROJECT.DATASET.TABLE`) or a standard SQL query read with
    `ReadFromBigQuery`, in chunks of up to `batch_rows` rows.

    Example::

        chunks = p | ReadBigQuery("my-project", fmt, table="my-project.penguins.raw")

    Args:
      project: the project that runs the query (Beam prefers the pipeline's `--project` when it is set).
      fmt: the record format (from `BigQuerySource.resolve`).
      table: `PROJECT.DATASET.TABLE`; or
      query: standard SQL, placeholders already bound.
      method: 'DIRECT_READ' (Storage Read API) or 'EXPORT' (extract to `--temp_location` as Avro).
      civil_datetime_columns: the DATETIME columns (see `to_text`).
      batch_rows: rows per chunk at most.
    """

    def __init__(self, project: str, fmt: RecordFormat, table: Optional[str] = None, query: Optional[str] = None,
                 method: str = "DIRECT_READ", civil_datetime_columns: Iterable[str] = (),
                 batch_rows: int = BATCH_ROWS):
        super().__init__()
        if (table is None) == (query is None):
            raise ValueError("give exactly one of table and query")
        if method not in METHODS:
            raise ValueError(f"method {method!r}: use one of {METHODS}")
        if batch_rows < 1:
            raise ValueError(f"batch_rows is {batch_rows}; it must be positive")
        self._project = project
        self._fmt = fmt
        self._table = table
        self._query = query
        self._method = method
        self._civil = frozenset(civil_datetime_columns)
        self._batch_rows = batch_rows

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[ParsedChunk]:
        options = pbegin.pipeline.options.view_as(GoogleCloudOptions)
        if self._method == "EXPORT" and not options.temp_location:
            raise ValueError("reading BigQuery with method EXPORT needs --temp_location=gs://... (BigQuery "
                             "extracts the rows there)")
        if self._method == "DIRECT_READ" and self._query is not None and not options.project:
            raise ValueError(f"reading a BigQuery query with DIRECT_READ needs --project (e.g. --project="
                             f"{self._project}): Beam deletes the temporary dataset it creates for the query's "
                             f"result only when the pipeline options name the project")
        if self._table is not None:
            project, dataset, table = self._table.rsplit(".", 2)
            read = beam.io.ReadFromBigQuery(table=f"{project}:{dataset}.{table}", project=self._project,
                                            method=self._method)
        else:
            read = beam.io.ReadFromBigQuery(query=self._query, use_standard_sql=True, project=self._project,
                                            method=self._method)
        source = f"bigquery:{self._table or 'query'}"
        return (pbegin
                | "ReadFromBigQuery" >> read
                | "Batch" >> beam.BatchElements(min_batch_size=self._batch_rows, max_batch_size=self._batch_rows)
                | "ToChunks" >> beam.Map(rows_to_chunk, fmt=self._fmt, source=source,
                                         civil_datetime_columns=self._civil))


class BigQuerySource(Source):
    """A BigQuery table or query, resolved to its record format when the graph is built.

    Example::

        source = BigQuerySource.resolve("bigquery:my-project", table="penguins.raw", query=None,
                                        method="DIRECT_READ", column_types={"year": "string"})
        out = p | ReadSplits(source, HashSplit((("train", 2), ("eval", 1))))

        daily = BigQuerySource.resolve(
            "bigquery:my-project", table=None, method="DIRECT_READ", column_types={}, spans=(19783, 19784),
            query="SELECT * FROM `my-project.logs.events` "
                  "WHERE ts >= @span_begin_timestamp AND ts < @span_end_timestamp")

    Run query reads with `--project`, and EXPORT reads with `--temp_location=gs://...` (see the module docstring).
    """

    def __init__(self, project: str, fmt: RecordFormat, table: Optional[str] = None, query: Optional[str] = None,
                 method: str = "DIRECT_READ", spans: Optional[tuple[int, int]] = None,
                 civil_datetime_columns: Sequence[str] = (), fingerprint: Optional[Mapping[str, Any]] = None,
                 batch_rows: int = BATCH_ROWS):
        self.project = project
        self.fmt = fmt
        self.table = table
        self.query = query
        self.method = method
        self.spans = spans
        self.civil_datetime_columns = tuple(civil_datetime_columns)
        self.fingerprint = dict(fingerprint or {})
        self.batch_rows = batch_rows

    @classmethod
    def resolve(cls, spec: str, table: Optional[str], query: Optional[str], method: str,
                column_types: dict[str, str], spans: Optional[tuple[int, int]] = None, *,
                batch_rows: int = BATCH_ROWS) -> "BigQuerySource":
        """Checks the arguments, then reads the table's schema (and its size, modification time and etag) or dry
        runs the query for its result schema, and maps it to the record format (`schema_to_format`).

        Args:
          spec: 'bigquery:PROJECT' (with `table` or `query`), 'bigquery:PROJECT.DATASET.TABLE' or
            'bigquery:PROJECT:DATASET.TABLE'. PROJECT runs the query and the schema requests.
          table: DATASET.TABLE (in PROJECT) or PROJECT.DATASET.TABLE.
          query: standard SQL; may use TFX's span placeholders (`bind_span_placeholders`), which need `spans`.
          method: 'DIRECT_READ' or 'EXPORT'.
          column_types: record types by column name, overriding BigQuery's.
          spans: the first and last span (UTC day since 1970-01-01) a query with placeholders reads.

        Raises:
          ValueError: a malformed spec, not exactly one table or query, an unknown method, span placeholders
            without spans (or spans without placeholders), no such table, a query BigQuery rejects, or a column
            that cannot be read (`schema_to_format`).
        """
        project, spec_table = parse_spec(spec)
        given = [name for name, value in (("a table in the spec", spec_table), ("table", table), ("query", query))
                 if value is not None]
        if len(given) != 1:
            raise ValueError(f"{spec}: give one of a table (bigquery:PROJECT.DATASET.TABLE, or table=DATASET.TABLE)"
                             f" and a query; got {' and '.join(given) if given else 'neither'}")
        method = method.upper()
        if method not in METHODS:
            raise ValueError(f"method {method!r}: use one of {METHODS}")
        if query is not None:
            used = query_span_placeholders(query)
            if used and spans is None:
                raise ValueError(f"the query uses {', '.join(used)}; it needs --spans A-B (the UTC days to read, "
                                 f"counted from 1970-01-01)")
            if spans is not None and not used:
                raise ValueError(f"spans {spans[0]}-{spans[1]} given, but the query uses none of "
                                 f"{', '.join(SPAN_PLACEHOLDERS)}")
        elif spans is not None:
            raise ValueError(f"spans {spans[0]}-{spans[1]} apply to a query with span placeholders, not a table")
        if spans is not None:
            query = bind_span_placeholders(query, *spans)
        table_id = spec_table or (qualify_table(table, project) if table is not None else None)
        with bigquery.Client(project=project) as client:
            if table_id is not None:
                try:
                    found = client.get_table(table_id)
                except exceptions.NotFound as e:
                    raise ValueError(f"{spec}: no such table {table_id} ({e.message})") from e
                fields, origin = found.schema, f"bigquery:{table_id}"
                fingerprint = {"num_rows": found.num_rows, "etag": found.etag,
                               "modified": found.modified.isoformat() if found.modified else None}
            else:
                try:
                    job = client.query(query, job_config=bigquery.QueryJobConfig(dry_run=True))
                except (exceptions.BadRequest, exceptions.NotFound) as e:
                    raise ValueError(f"{spec}: BigQuery rejects the query: {e.message}") from e
                fields, origin, fingerprint = job.schema or [], f"{spec} query", None
        fmt = schema_to_format(fields, column_types, origin)
        civil = [f.name for f in fields if f.field_type == "DATETIME"]
        return cls(project, fmt, table=table_id, query=query, method=method,
                   spans=spans, civil_datetime_columns=civil, fingerprint=fingerprint, batch_rows=batch_rows)

    def describe(self) -> list[dict[str, Any]]:
        """The run manifest's entry: table or (bound) query, method, spans, and for a table its row count,
        etag and modification time when the graph was built."""
        return [{"bigquery": self.table, "project": self.project, "query": self.query, "method": self.method,
                 "spans": list(self.spans) if self.spans is not None else None,
                 "num_rows": self.fingerprint.get("num_rows"), "modified": self.fingerprint.get("modified"),
                 "etag": self.fingerprint.get("etag")}]

    def read(self) -> ReadBigQuery:
        return ReadBigQuery(self.project, self.fmt, table=self.table, query=self.query, method=self.method,
                            civil_datetime_columns=self.civil_datetime_columns, batch_rows=self.batch_rows)
