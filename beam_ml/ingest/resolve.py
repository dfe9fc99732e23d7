"""From a job's input options (`beam_ml.config.source.SourceConfig`) to a `Source`, when the graph is built.

`--input` picks the source: `bigquery:...` (BigQuery), `postgresql://...` or `mysql://...` (a database), a path
inside `--input_dvc_repo` (a DVC-tracked file at `--input_dvc_rev`), or else a file glob, local or gs://, whose
`{SPAN}`/`{VERSION}`/`{YYYY}{MM}{DD}` placeholders are resolved by `--spans`. A training run may instead give
`--input_splits` (one glob per split). Every failure is a `ConfigError` naming the option to fix.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Optional

from beam_ml.config.source import SourceConfig, input_kind
from beam_ml.core.errors import ConfigError
from beam_ml.core.records import RecordFormat
from beam_ml.ingest import spans
from beam_ml.ingest.dvc import DvcFileSource
from beam_ml.ingest.files.source import FileSource, file_kind, matched_paths, resolve_files
from beam_ml.ingest.source import PresplitSource, Source


@dataclasses.dataclass(frozen=True)
class ResolvedInput:
    source: Source
    span_selection: Optional[spans.SpanSelection] = None


def resolve_source(config: SourceConfig, column_types: dict[str, str]) -> ResolvedInput:
    """The source the options describe, with its record format worked out (files sampled, database and BigQuery
    schemas read), and the columns --allow_non_finite names checked to be float columns of it. Raises ConfigError."""
    resolved = _resolve(config, column_types)
    for column in config.allow_non_finite:
        require_column(resolved.source.fmt, column, "allow_non_finite")
        if resolved.source.fmt.type_of(column) != "float":
            raise ConfigError("allow_non_finite", f"column {column!r} is {resolved.source.fmt.type_of(column)!r}, "
                                                  f"not a float column")
    return resolved


def _resolve(config: SourceConfig, column_types: dict[str, str]) -> ResolvedInput:
    splits = getattr(config, "input_splits", None)
    if splits:
        return ResolvedInput(_presplit(splits, column_types, config.batch_bytes))
    spec = config.input
    kind = input_kind(spec)
    if kind == "bigquery":
        return ResolvedInput(_bigquery(config, column_types))
    if kind == "database":
        return ResolvedInput(_database(config, column_types))
    for name in ("input_table", "input_query", "input_partition_column"):
        if getattr(config, name):
            raise ConfigError(name, "applies to a database or BigQuery --input only")
    if config.input_dvc_repo:
        return ResolvedInput(_dvc(config, column_types))
    selection = None
    if spans.has_placeholders(spec):
        try:
            selection = spans.resolve_spans(spec, config.spans, config.input_version)
        except ValueError as e:
            raise ConfigError("input", str(e)) from e
    patterns = selection.patterns if selection else spec
    return ResolvedInput(_files("input", lambda: FileSource.resolve(patterns, column_types, config.batch_bytes)),
                         selection)


def _files(option: str, resolve) -> FileSource:
    try:
        return resolve()
    except (ValueError, OSError) as e:
        raise ConfigError(option, str(e)) from e
    except Exception as e:  # a filesystem error (e.g. permissions, unknown scheme)
        raise ConfigError(option, f"cannot read the input: {type(e).__name__}: {e}") from e


def _presplit(patterns: dict[str, str], column_types: dict[str, str], chunk_bytes: int) -> PresplitSource:
    # One record format for all splits, worked out from all their files at once (each file fingerprinted once):
    # the same rules as for one glob, so a column is typed the same in every split.
    together = _files("input_splits", lambda: FileSource.resolve(list(patterns.values()), column_types, chunk_bytes))
    files = {f.path: f for f in together.files}
    owners: dict[str, str] = {}
    sources = {}
    for name, pattern in patterns.items():
        paths = _files("input_splits", lambda p=pattern: matched_paths(p))
        if not paths:
            raise ConfigError("input_splits", f"{name}: {pattern!r} matches no files")
        for path in paths:
            if path in owners:
                raise ConfigError("input_splits", f"{path} is matched by both {owners[path]!r} and {name!r}: a "
                                                  f"file belongs to one split")
            owners[path] = name
        sources[name] = FileSource([files[p] for p in paths], together.fmt, chunk_bytes)
    return PresplitSource(sources)


def _query_spans(config: SourceConfig) -> Optional[tuple[int, int]]:
    """The span range bound into a query's placeholders: --spans A-B (UTC days since 1970-01-01); None when the
    query has no placeholders."""
    query = config.input_query
    if not query or not spans.query_span_placeholders(query):
        return None
    if not re.fullmatch(r"[0-9]+-[0-9]+", config.spans):
        raise ConfigError("spans", "the query has span placeholders (@span_begin_timestamp...): give --spans A-B, "
                                   "a range of UTC days counted from 1970-01-01")
    begin, end = (int(x) for x in config.spans.split("-"))
    if begin > end:
        raise ConfigError("spans", f"{config.spans}: the range is empty")
    return begin, end


def _database(config: SourceConfig, column_types: dict[str, str]) -> Source:
    from beam_ml.ingest.sql import AuthenticationError, Credentials, DatabaseError, SqlSource
    span_range = _query_spans(config)
    credentials = Credentials(config.input_password_env, config.input_password_file)
    password_option = "input_password_file" if config.input_password_file else "input_password_env"
    try:
        password = credentials.password()
    except DatabaseError as e:
        raise ConfigError("input_password_file", str(e)) from None
    try:
        return SqlSource.resolve(config.input, table=config.input_table, query=config.input_query,
                                 partition_column=config.input_partition_column, partitions=config.input_partitions,
                                 credentials=credentials, column_types=column_types,
                                 span_params=spans.query_span_values(*span_range) if span_range else None)
    except AuthenticationError as e:
        unset = "" if password is not None else \
            f" (no password was given: ${config.input_password_env} is not set and there is no input_password_file)"
        raise ConfigError(password_option, f"{e}{unset}") from None
    except ValueError as e:  # DatabaseError included: the server's answer, with the DSN masked
        raise ConfigError("input", str(e)) from None


def _bigquery(config: SourceConfig, column_types: dict[str, str]) -> Source:
    from beam_ml.ingest.bigquery import BigQuerySource
    span_range = _query_spans(config)
    try:
        return BigQuerySource.resolve(config.input, table=config.input_table, query=config.input_query,
                                      method=config.input_bigquery_method, column_types=column_types,
                                      spans=span_range)
    except ValueError as e:
        raise ConfigError("input", str(e)) from None
    except Exception as e:  # the client's own errors (NotFound, Forbidden, transport)
        raise ConfigError("input", f"cannot read {config.input}: {type(e).__name__}: {e}") from None


def _dvc(config: SourceConfig, column_types: dict[str, str]) -> FileSource:
    from beam_ml.ingest.dvc import UnknownRevision, resolve_dvc_input
    try:
        tracked = resolve_dvc_input(config.input, config.input_dvc_repo, config.input_dvc_rev)
    except UnknownRevision as e:
        raise ConfigError("input_dvc_rev", str(e)) from None
    except ValueError as e:
        raise ConfigError("input", str(e)) from None
    source = _files("input", lambda: FileSource(*resolve_files(tracked.url, column_types,
                                                               kind=file_kind(config.input)),
                                                chunk_bytes=config.batch_bytes))
    return DvcFileSource(source, {"dvc": dataclasses.asdict(tracked)})


def require_column(fmt: RecordFormat, column: str, option: str) -> None:
    if column not in fmt.columns:
        raise ConfigError(option, f"column {column!r} is not in the input header ({', '.join(fmt.columns)})")
