"""The input options every job shares (`SourceConfig`) and the grammar of `--input`.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional
from urllib.parse import urlsplit

from beam_ml.config.base import COLUMN_NAME_REGEX, JobConfig, option
from beam_ml.core.errors import ConfigError
from beam_ml.core.redact import masked_url

INPUT_HELP = ("What to read: a file glob (local path or gs://, e.g. data/*.csv) of CSV with a header, JSON Lines "
              "(.jsonl), Parquet (.parquet), TFRecord of tf.Example (.tfrecord[.gz]) or images in class folders "
              "(data/*/*.jpg), by extension; a database, postgresql://user@host:port/db or mysql://user@host:port/db "
              "(no password: see input_password_env), with input_table or input_query; or BigQuery, "
              "bigquery:project.dataset.table or bigquery:project with input_query")


SQL_IDENTIFIER_REGEX = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$"


# A database's schema.table, or BigQuery's dataset.table / project.dataset.table (projects may hold - and :).
TABLE_REGEX = r"^[A-Za-z0-9_][A-Za-z0-9_:.-]*$"


# The URL schemes of a database --input (`beam_ml.ingest.sql` has a driver for each).
DATABASE_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb")


def input_kind(spec: str) -> str:
    """What an --input names: "bigquery" (`bigquery:...`), "database" (a URL of `DATABASE_SCHEMES`) or "files" (a
    glob, or a path inside --input_dvc_repo)."""
    if spec.startswith("bigquery:"):
        return "bigquery"
    if urlsplit(spec).scheme.split("+")[0] in DATABASE_SCHEMES:
        return "database"
    return "files"


BATCH_BYTES_HELP = "Bytes of CSV parsed into one Arrow RecordBatch."
COLUMN_TYPES_HELP = ('Column types as JSON ({"col": "int"|"float"|"string"}); columns not listed are inferred '
                     "from a sample of the first file.")


@dataclasses.dataclass(frozen=True)
class SourceConfig(JobConfig):
    """The input options every job shares (`beam_ml.ingest.resolve.resolve_source` turns them into a source)."""

    input: Optional[str] = option(None, regex=r"^\S+$", help=INPUT_HELP + ".")
    input_table: Optional[str] = option(None, regex=TABLE_REGEX,
                                        help="Table to read from a database or BigQuery input (schema.table or "
                                             "dataset.table).")
    input_query: Optional[str] = option(None, help="Query to read from a database or BigQuery input instead of a "
                                                   "table. Span placeholders (@span_begin_timestamp, "
                                                   "@span_end_timestamp, @span_yyyymmdd_utc) are bound from --spans "
                                                   "A-B, where a span is a UTC day counted from 1970-01-01.")
    input_partition_column: Optional[str] = option(None, regex=COLUMN_NAME_REGEX,
                                                   help="Numeric or date column whose value ranges divide a database "
                                                        "read into input_partitions parallel reads.")
    input_partitions: int = option(1, kind="int", regex=r"^[0-9]+$",
                                   help="Parallel reads of a database input (ranges of input_partition_column).")
    input_password_env: Optional[str] = option("BEAM_ML_DB_PASSWORD", regex=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                               help="Environment variable holding the database password (read on "
                                                    "the workers too; never logged or recorded).")
    input_password_file: Optional[str] = option(None, regex=r"^\S+$",
                                                help="File holding the database password (e.g. a mounted secret); "
                                                     "wins over input_password_env.")
    input_bigquery_method: str = option("DIRECT_READ", kind="choice", regex=r"^(DIRECT_READ|EXPORT)$",
                                        help="How a BigQuery input is read: DIRECT_READ (the Storage Read API) or "
                                             "EXPORT (an export job to --temp_location).")
    input_dvc_repo: Optional[str] = option(None, regex=r"^\S+$",
                                           help="Git repository (URL or path) in which input is a DVC-tracked file.")
    input_dvc_rev: Optional[str] = option(None, regex=r"^\S+$",
                                          help="Git revision of input_dvc_repo to read the DVC-tracked input at "
                                               "(default: the repository's HEAD).")
    spans: str = option("latest", regex=r"^(latest|last:[1-9][0-9]*|[0-9]+-[0-9]+)$",
                        help="Which spans an input pattern with {SPAN} or {YYYY}{MM}{DD} reads: latest, last:N (the "
                             "newest N) or A-B (inclusive).")
    input_version: Optional[int] = option(None, kind="int", regex=r"^[0-9]+$",
                                          help="Version to read of each span ({VERSION} in the input pattern); "
                                               "default: each span's newest.")
    allow_non_finite: list = option([], kind="json",
                                    help="Float columns whose values may be infinite or NaN (JSON list of names); "
                                         "elsewhere such a value makes its row a dead letter.")

    def validate(self) -> None:
        super().validate()
        if self.input_table and self.input_query:
            raise ConfigError("input_query", "give input_table or input_query, not both")
        if self.input_partitions < 1:
            raise ConfigError("input_partitions", "must be at least 1")
        if not isinstance(self.allow_non_finite, list) or not all(isinstance(c, str) for c in self.allow_non_finite):
            raise ConfigError("allow_non_finite", "must be a JSON list of column names")
        if self.input_partitions > 1 and not self.input_partition_column:
            raise ConfigError("input_partition_column", "is required with input_partitions > 1")
        if self.input_dvc_rev and not self.input_dvc_repo:
            raise ConfigError("input_dvc_rev", "needs input_dvc_repo")
        kind = input_kind(self.input) if self.input else None
        if self.input_dvc_repo and kind in ("database", "bigquery"):
            raise ConfigError("input_dvc_repo", "applies to a file input only (a path inside the repo)")
        if kind == "database" and self.input_table and not re.match(SQL_IDENTIFIER_REGEX, self.input_table):
            raise ConfigError("input_table", f"{self.input_table!r} is not a plain SQL identifier (letters, "
                                             f"digits and _, dotted for schema.table)")

    def to_dict(self) -> dict[str, Any]:
        """The options as recorded in the run record: a git URL's user and token masked."""
        values = super().to_dict()
        if self.input_dvc_repo:
            values["input_dvc_repo"] = masked_url(self.input_dvc_repo)
        return values
