"""SQL databases (PostgreSQL and MySQL/MariaDB, the engines behind Cloud SQL) as a source, through SQLAlchemy.

A table or a query is read in `partitions` parallel reads, each a range of a numeric or date column
(`partition_column`; its bounds come from `MIN`/`MAX` when the graph is built), and each streams its rows with a
server-side cursor (`stream_results`) `fetch_rows` at a time into RecordBatches: memory stays flat whatever the
table's size.

No SQL is built from user text: a table name or a column name must be a plain identifier (letters, digits, `_`,
dotted for schema.table) and is quoted by the dialect; a user query is used as written, wrapped as a subquery, and
every value (partition bounds, span bounds) is a bound parameter. The password never appears in the URL the user
gives: it comes from an environment variable or a secret file, read where the connection is made (the launcher
and each worker), and the DSN in the run record and in every message is masked (`postgresql://beam:***@host:5432/ml`).

Column types come from a sample of the result (`_SAMPLE_ROWS` rows): Python ints and bools → int, floats and
decimals → float, anything else (text, bytes, dates as ISO text) → string; `column_types` overrides. A value that
does not convert to its column's type makes its row a dead letter.

    source = SqlSource.resolve("postgresql://beam@127.0.0.1:5432/ml", table="taxi", query=None,
                               partition_column="id", partitions=4, credentials=Credentials("PGPASSWORD"),
                               column_types={})
"""
from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import math
import os
import re
from typing import Any, Iterator, Optional, Sequence
from urllib.parse import unquote, urlsplit

import numpy as np
import pyarrow as pa

from beam_ml.core.chunks import ParsedChunk
from beam_ml.core.deadletter import DeadLetter
from beam_ml.core.records import ARROW_TYPES, RecordFormat, to_list_array
from beam_ml.ingest.source import ChunkedSource
from beam_ml.ingest.spans import QUERY_SPAN_PLACEHOLDER, query_span_placeholders

# A driver for each of `beam_ml.config.source.DATABASE_SCHEMES` (the schemes a database --input may have).
DRIVERS = {"postgresql": "postgresql+psycopg2", "postgres": "postgresql+psycopg2", "mysql": "mysql+pymysql",
           "mariadb": "mysql+pymysql"}


DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306}
CONNECT_TIMEOUT_S = 10
FETCH_ROWS = 20_000
_SAMPLE_ROWS = 1000
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DatabaseError(ValueError):
    """A database could not be read; the message names the masked DSN and never holds the password."""


class AuthenticationError(DatabaseError):
    """The server refused the user or the password."""


# How psycopg2 and PyMySQL word a refused login ("password authentication failed", "no password supplied",
# "Access denied for user").
_LOGIN_REFUSED = re.compile(r"password|authentication failed|access denied", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Dsn:
    """Where the database is: `postgresql://user@host:port/db` or `mysql://...` (a password in it is rejected)."""

    engine: str
    user: Optional[str]
    host: str
    port: int
    database: str

    @classmethod
    def parse(cls, url: str) -> "Dsn":
        parts = urlsplit(url)
        engine = parts.scheme.split("+")[0]
        if engine not in DRIVERS:
            raise ValueError(f"{parts.scheme!r} is not a supported database ({', '.join(sorted(DRIVERS))})")
        if parts.password is not None:
            raise ValueError("the database URL must not hold a password (it would be logged with the command line "
                             "and the job's parameters): use --input_password_env or --input_password_file")
        database = parts.path.lstrip("/")
        if not parts.hostname or not database or "/" in database:
            raise ValueError(f"expected {engine}://user@host[:port]/database, got {url!r}")
        try:
            port = parts.port or DEFAULT_PORTS[engine]
        except ValueError as e:
            raise ValueError(f"bad port in {url!r}: {e}") from None
        return cls(engine=engine, user=unquote(parts.username) if parts.username else None, host=parts.hostname,
                   port=port, database=database)

    def masked(self) -> str:
        user = f"{self.user}:***@" if self.user else ""
        return f"{self.engine}://{user}{self.host}:{self.port}/{self.database}"


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Where the password is: a file (e.g. a mounted secret) or else an environment variable; read when
    connecting, on whichever machine connects."""

    password_env: Optional[str] = None
    password_file: Optional[str] = None

    def password(self) -> Optional[str]:
        if self.password_file:
            from beam_ml.core import fileutil
            try:
                return fileutil.read_text(self.password_file).rstrip("\r\n")
            except Exception as e:
                raise DatabaseError(f"cannot read the password file {self.password_file}: {type(e).__name__}") \
                    from None
        return os.environ.get(self.password_env) if self.password_env else None


def quote_identifier(name: str, dialect) -> str:
    """A plain (optionally dotted) identifier, quoted by the dialect; anything else is rejected."""
    parts = name.split(".")
    if not 1 <= len(parts) <= 3 or not all(_IDENTIFIER.match(p) for p in parts):
        raise ValueError(f"{name!r} is not a plain SQL identifier (letters, digits and _, dotted for "
                         f"schema.table)")
    return ".".join(dialect.identifier_preparer.quote(p) for p in parts)  # quoted where needed (reserved, mixed case)


def _engine(dsn: Dsn, credentials: Credentials):
    import sqlalchemy
    from sqlalchemy.pool import NullPool
    url = sqlalchemy.engine.URL.create(DRIVERS[dsn.engine], username=dsn.user, password=credentials.password(),
                                       host=dsn.host, port=dsn.port, database=dsn.database)
    timeout = {"connect_timeout": CONNECT_TIMEOUT_S}
    return sqlalchemy.create_engine(url, poolclass=NullPool, connect_args=timeout)


def _clean_error(e: BaseException, dsn: Dsn, credentials: Credentials) -> str:
    """The driver's own message (first line), with the password masked should a driver ever echo it."""
    original = getattr(e, "orig", None) or e
    message = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    password = credentials.password()
    if password:
        message = message.replace(password, "***")
    return f"{type(original).__name__}: {message}"


@dataclasses.dataclass(frozen=True)
class SqlPartition:
    """One parallel read: the base query restricted to a range of the partition column (or everything)."""

    dsn: Dsn
    credentials: Credentials
    query: str
    params: tuple[tuple[str, Any], ...]
    label: str
    fetch_rows: int = FETCH_ROWS

    def parse(self, fmt: RecordFormat) -> Iterator[ParsedChunk]:
        import sqlalchemy
        engine = _engine(self.dsn, self.credentials)
        # The DBAPI cursor itself, server-side (psycopg2's named cursor, PyMySQL's SSCursor): plain tuples, without
        # SQLAlchemy's per-row wrappers. SQLAlchemy still compiles the statement and its bound parameters.
        compiled = sqlalchemy.text(self.query).bindparams(**dict(self.params)).compile(dialect=engine.dialect)
        line = 0
        try:
            connection = engine.raw_connection()
            try:
                cursor = _server_side_cursor(connection, self.dsn.engine)
                cursor.execute(str(compiled), compiled.params)
                rows = cursor.fetchmany(self.fetch_rows)  # a named cursor has no description before a fetch
                names = [column[0] for column in cursor.description]
                if names != list(fmt.columns):
                    raise DatabaseError(f"{self.dsn.masked()}: the query now returns columns {names}, the job was "
                                        f"built for {list(fmt.columns)}")
                while rows:
                    yield rows_to_chunk(rows, fmt, f"{self.dsn.masked()} {self.label}", line)
                    line += len(rows)
                    rows = cursor.fetchmany(self.fetch_rows)
                cursor.close()
            finally:
                connection.close()
        except (sqlalchemy.exc.SQLAlchemyError, engine.dialect.loaded_dbapi.Error) as e:
            raise DatabaseError(f"{self.dsn.masked()}: reading {self.label} failed: "
                                f"{_clean_error(e, self.dsn, self.credentials)}") from None
        finally:
            engine.dispose()


def _server_side_cursor(connection, engine: str):
    if DRIVERS[engine].startswith("postgresql"):
        return connection.cursor(name="beam_ml_read")  # a named cursor is a server-side one
    import pymysql.cursors
    return connection.cursor(pymysql.cursors.SSCursor)


def rows_to_chunk(rows: Sequence[Sequence[Any]], fmt: RecordFormat, source: str, first_line: int) -> ParsedChunk:
    """Row tuples → a RecordBatch in the record layout, column by column; a row with a value that does not convert
    to its column's type is a dead letter (`line` = its 1-based position in the partition's result)."""
    columns = _transpose(rows, len(fmt.columns))
    bad = np.zeros(len(rows), dtype=bool)
    reasons: dict[int, str] = {}
    arrays = []
    for name, kind, values in zip(fmt.columns, fmt.types, columns):
        array, column_bad = _column_array(values, kind)
        for i in np.flatnonzero(column_bad & ~bad):
            reasons[int(i)] = f"column {name!r}: cannot convert {values[i]!r} to {kind}"
        bad |= column_bad
        arrays.append(array)
    keep = ~bad
    batch = pa.RecordBatch.from_arrays(
        [to_list_array(a.filter(pa.array(keep)) if bad.any() else a) for a in arrays], schema=fmt.arrow_schema())
    dead = [DeadLetter(source=source, line=first_line + i + 1, raw=_row_json(fmt.columns, rows[i]),
                       reason=reasons[i]) for i in sorted(reasons)]
    return ParsedChunk(batch=batch, dead_letters=dead, records_read=len(rows))


def _transpose(rows: Sequence[Sequence[Any]], width: int) -> list:
    """Columns as object arrays (Arrow converts those ~10x faster than tuples)."""
    table = np.empty((len(rows), width), dtype=object)
    try:
        table[:] = rows
    except ValueError:  # a value that is itself a sequence (an array column) confuses numpy: one at a time
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                table[i, j] = value
    return [table[:, j] for j in range(width)]


_CONVERSION_ERRORS = (TypeError, ValueError, OverflowError, pa.ArrowException, decimal.InvalidOperation)
_INT64 = (-2 ** 63, 2 ** 63 - 1)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _column_array(values: Sequence[Any], kind: str) -> tuple[pa.Array, np.ndarray]:
    """The column as a flat Arrow array of the record type (bad values null), and which values were bad."""
    bad = np.zeros(len(values), dtype=bool)
    try:
        return _convert(values, kind), bad
    except _CONVERSION_ERRORS:
        pass
    converted = []
    for i, value in enumerate(values):
        try:
            converted.append(_convert([value], kind)[0].as_py())
        except _CONVERSION_ERRORS:
            converted.append(None)
            bad[i] = True
    return pa.array(converted, type=ARROW_TYPES[kind]), bad


def _convert(values: Sequence[Any], kind: str) -> pa.Array:
    # Arrow converts ints, floats and text itself; decimals, bools, dates... take the slow path below. An int
    # column is inferred first: given int64, Arrow would truncate a float silently.
    try:
        if kind != "int":
            return pa.array(values, type=ARROW_TYPES[kind], from_pandas=False)
        inferred = pa.array(values, from_pandas=False)
        if pa.types.is_integer(inferred.type) or pa.types.is_null(inferred.type):
            return inferred.cast(pa.int64())
    except _CONVERSION_ERRORS:
        pass
    if kind == "string":
        return pa.array([_text(v) for v in values], type=pa.large_binary())
    if kind == "int":
        if any(isinstance(v, (float, decimal.Decimal)) and v != int(v) for v in values if v is not None):
            raise ValueError("not an integer")
        ints = [None if v is None else int(v) for v in values]
        if any(v is not None and not _INT64[0] <= v <= _INT64[1] for v in ints):
            raise OverflowError("outside int64")
        return pa.array(ints, type=pa.int64())
    floats = [None if v is None else float(v) for v in values]
    if any(v is not None and not abs(v) <= _FLOAT32_MAX for v in floats if v == v):  # NaN passes as NaN
        raise OverflowError("outside float32")  # a value the model would see as inf
    return pa.array(floats, type=pa.float32())


def _text(value: Any) -> Optional[bytes]:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat().encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value).encode()


def _row_json(columns: Sequence[str], row: Sequence[Any]) -> str:
    return json.dumps({c: v if isinstance(v, (int, float, str, type(None))) else str(v)
                       for c, v in zip(columns, row)}, sort_keys=True)


def _infer_type(values: Sequence[Any]) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (bool, int)) for v in present):
        return "int"
    if present and all(isinstance(v, (bool, int, float, decimal.Decimal)) for v in present):
        return "float"
    return "string"


class SqlSource(ChunkedSource):
    """A table or query of a PostgreSQL or MySQL database, read in parallel partitions with server-side cursors.

    Example::

        source = SqlSource.resolve("mysql://beam@db:3306/ml", table="penguins", query=None,
                                   partition_column="id", partitions=4,
                                   credentials=Credentials(password_env="BEAM_ML_DB_PASSWORD"), column_types={})
        out = p | ReadSplits(source, HashSplit((("train", 2), ("eval", 1))))
    """

    def __init__(self, dsn: Dsn, credentials: Credentials, base_query: str, fmt: RecordFormat,
                 partitions: Sequence[SqlPartition], described: dict[str, Any]):
        self.dsn = dsn
        self.credentials = credentials
        self.base_query = base_query
        self.fmt = fmt
        self._partitions = list(partitions)
        self._described = described

    @classmethod
    def resolve(cls, url: str, table: Optional[str], query: Optional[str], partition_column: Optional[str],
                partitions: int, credentials: Credentials, column_types: dict[str, str],
                span_params: Optional[dict[str, Any]] = None, fetch_rows: int = FETCH_ROWS) -> "SqlSource":
        """Checks the names, connects (the password and the server are checked here, before any work), samples
        the result for its columns and types and plans the partitions. Raises ValueError: bad identifiers and
        URLs at once, without connecting; `DatabaseError` for what the server says."""
        import sqlalchemy
        dsn = Dsn.parse(url)
        if (table is None) == (query is None):
            raise ValueError("a database input needs input_table or input_query (one of them)")
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        if partitions > 1 and not partition_column:
            raise ValueError("more than one partition needs a partition column")
        dialect = sqlalchemy.create_engine(f"{DRIVERS[dsn.engine]}://").dialect  # quoting only: no connection
        source = f"SELECT * FROM {quote_identifier(table, dialect)}" if table else _user_query(query)
        column = quote_identifier(partition_column, dialect) if partition_column else None
        params = dict(span_params or {})
        if query and query_span_placeholders(query) and not span_params:
            raise ValueError("the query has span placeholders (@span_begin_timestamp, ...): give --spans A-B")
        subquery = f"(\n{source}\n) AS beam_ml_input"  # newlines: a query may end in a -- comment
        base = f"SELECT * FROM {subquery}"
        engine = _engine(dsn, credentials)
        try:
            with engine.connect() as connection:
                sample = connection.execute(sqlalchemy.text(f"{base} LIMIT {_SAMPLE_ROWS}"), params)
                names = list(sample.keys())
                rows = sample.fetchall()
                bounds = None
                if column:
                    if partition_column not in names:
                        raise ValueError(f"partition column {partition_column!r} is not in the result ({names})")
                    bounds = tuple(connection.execute(
                        sqlalchemy.text(f"SELECT MIN({column}), MAX({column}) FROM {subquery}"),
                        params).one())
        except sqlalchemy.exc.SQLAlchemyError as e:
            message = _clean_error(e, dsn, credentials)
            error = AuthenticationError if _LOGIN_REFUSED.search(message) else DatabaseError
            raise error(f"cannot read {dsn.masked()} (host {dsn.host}, port {dsn.port}): {message}") from None
        finally:
            engine.dispose()
        if not rows:
            raise ValueError(f"{dsn.masked()}: {'table ' + table if table else 'the query'} has no rows")
        for name in names:
            if not _IDENTIFIER.match(name):
                raise ValueError(f"result column {name!r} is not a plain identifier; alias it in the query")
        samples = list(zip(*rows))
        fmt = RecordFormat(columns=tuple(names),
                           types=tuple(column_types.get(n) or _infer_type(v) for n, v in zip(names, samples)))
        what = f"table {table}" if table else "query"
        planned = [SqlPartition(dsn, credentials, f"{base}", tuple(params.items()), what, fetch_rows)] \
            if not column else _range_partitions(dsn, credentials, base, column, bounds, partitions,
                                                 params, what, fetch_rows)
        described = {"database": dsn.masked(), "table": table, "query": query,
                     "partition_column": partition_column, "partitions": len(planned),
                     "partition_bounds": [_jsonable(b) for b in bounds] if bounds else None,
                     "span_params": {k: _jsonable(v) for k, v in params.items()} or None}
        return cls(dsn, credentials, base, fmt, planned, described)

    def describe(self) -> list[dict[str, Any]]:
        return [self._described]

    def chunks(self) -> list:
        return list(self._partitions)


def _user_query(query: str) -> str:
    text = query.strip().rstrip(";").strip()
    if ";" in text:
        raise ValueError("input_query must be a single statement")
    # Colons are escaped, so SQLAlchemy reads none of the user's text (`'a :b'`) as a bind parameter; then TFX's
    # @span_... placeholders become the bound parameters.
    return QUERY_SPAN_PLACEHOLDER.sub(r":\1", text.replace(":", "\\:"))


def _range_partitions(dsn: Dsn, credentials: Credentials, base: str, column: str, bounds: tuple, count: int,
                      params: dict, what: str, fetch_rows: int) -> list[SqlPartition]:
    """`count` ranges cut at edges between MIN and MAX. The outer ranges are open-ended (the first also takes NULL
    keys), so every row lands in exactly one partition whatever the column's type and rounding: a row between two
    edges satisfies exactly one of `< e` and `>= e`."""
    edges = _inner_edges(*bounds, count)
    if not edges:  # too narrow, all NULL or not finite: one read
        return [SqlPartition(dsn, credentials, base, tuple(params.items()), what, fetch_rows)]
    partitions = []
    for i in range(len(edges) + 1):
        conditions, bound, label = [], dict(params), []
        if i > 0:
            conditions.append(f"{column} >= :beam_ml_lo")
            bound["beam_ml_lo"] = edges[i - 1]
            label.append(f">= {_jsonable(edges[i - 1])}")
        if i < len(edges):
            conditions.append(f"{column} < :beam_ml_hi")
            bound["beam_ml_hi"] = edges[i]
            label.append(f"< {_jsonable(edges[i])}")
        condition = " AND ".join(conditions)
        if i == 0:
            condition += f" OR {column} IS NULL"
            label.append("or NULL")
        partitions.append(SqlPartition(dsn, credentials, f"{base} WHERE {condition}", tuple(bound.items()),
                                       f"{what} [{column} {' '.join(label)}]", fetch_rows))
    return partitions


def _inner_edges(low: Any, high: Any, count: int) -> list:
    """Up to count-1 distinct increasing cut points strictly inside (low, high]; none when the range cannot be
    cut (NULL or non-finite bounds, a single value)."""
    if low is None or high is None or count < 2:
        return []
    if isinstance(low, datetime.date):  # dates and datetimes
        step = (high - low) / count
        edges = [low + step * i for i in range(1, count)]
    elif isinstance(low, int) and isinstance(high, int):
        edges = [low + (high - low) * i // count for i in range(1, count)]
    elif isinstance(low, (int, float, decimal.Decimal)) and isinstance(high, (int, float, decimal.Decimal)):
        if not (math.isfinite(low) and math.isfinite(high)):
            return []
        if isinstance(low, decimal.Decimal) or isinstance(high, decimal.Decimal):  # NUMERIC: exact edges
            low, high = decimal.Decimal(low), decimal.Decimal(high)
        edges = [low + (high - low) * i / count for i in range(1, count)]
    else:
        raise ValueError(f"the partition column must be numeric, a date or a timestamp; its values are "
                         f"{type(low).__name__}")
    return sorted({e for e in edges if low < e <= high})


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value
