"""The option machinery every job's config shares: a frozen dataclass whose fields are declared once with `option`
(help, kind, regex, required); that declaration gives the job's flags, its `--help`, its Flex Template parameters
and the per-field checks.

Config flows one way: YAML file / flags (strings) → the job's config (parsed and validated here, before any work)
→ transform constructors. Every field is flat so that a Flex Template parameter or a `--flag` can override it;
structured fields take JSON on the command line.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Mapping, Optional

import yaml

from beam_ml.core import fileutil
from beam_ml.core.errors import ConfigError
from beam_ml.core.records import TYPES


def option(default: Any = dataclasses.MISSING, *, help: str, kind: str = "str", regex: Optional[str] = None,
           required: bool = False) -> Any:
    metadata = {"help": help, "kind": kind, "regex": regex, "required": required}
    if isinstance(default, (dict, list)):
        frozen = default
        return dataclasses.field(default_factory=lambda: json.loads(json.dumps(frozen)), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def metadata_store_option(default: str) -> Any:
    """The `metadata_store` option of a job whose runs are recorded in the lineage store; `default` says which
    store that is when the option is not given."""
    return option(None, regex=r"^\S+$", help="The ML Metadata store that records every run's lineage: a SQLite file, "
                                             f"mysql://user@host:port/database, or 'none'. Default: {default}")


def metadata_password_env_option() -> Any:
    return option("BEAM_ML_METADATA_PASSWORD", regex=r"^[A-Za-z_][A-Za-z0-9_]*$",
                  help="The environment variable holding a MySQL metadata store's password.")


COLUMN_NAME_REGEX = r"^[A-Za-z_][A-Za-z0-9_]*$"
RUN_ID_REGEX = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
BIGQUERY_TABLE_REGEX = r"^[a-z][a-z0-9-]{4,61}[a-z0-9][:.][A-Za-z0-9_]{1,1024}\.[A-Za-z0-9_]{1,1024}$"  # project:ds.t
# Where the runs of a job that uses a model are recorded by default (`metadata_store_option`): with that model.
MODEL_STORE_DEFAULT = ("the store of the training run that produced the model (so the run joins the model's "
                       "lineage), else <output_dir>/metadata.sqlite for a local output_dir.")


class JobConfig:
    """Base of a job's frozen config dataclass: loading from YAML plus overrides, and the per-field checks.

    Each field is declared once with `option` (help, kind, regex, required); that declaration gives the job's
    flags, its `--help`, its Flex Template parameters and the checks below.
    """

    # Groups of options that name one thing in different ways (a model by its serving dir or its directory): an
    # override of one replaces the config file's other, so a flag can point a config file's job elsewhere.
    ALTERNATIVES: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def load(cls, path: Optional[str], overrides: Mapping[str, Any]):
        """Reads a YAML file (optional) and applies overrides (flag values, strings or parsed); validates all."""
        values: dict[str, Any] = {}
        if path:
            try:
                loaded = yaml.safe_load(fileutil.read_text(path)) or {}
            except Exception as e:  # OSError, YAMLError or a gfile NotFoundError
                raise ConfigError("config", f"cannot read {path}: {e}") from e
            if not isinstance(loaded, dict):
                raise ConfigError("config", f"{path} must hold a mapping of option names to values")
            values.update(loaded)
        given = {k: v for k, v in overrides.items() if v is not None}
        for group in cls.ALTERNATIVES:
            if any(name in given for name in group):
                for name in group:
                    values.pop(name, None)
        values.update(given)
        known = {f.name for f in dataclasses.fields(cls)}
        for name in values:
            if name not in known:
                raise ConfigError(name, f"unknown option (known: {', '.join(sorted(known))})")
        parsed = {f.name: _parse(f, values[f.name]) for f in dataclasses.fields(cls) if f.name in values}
        config = cls(**parsed)
        config.validate()
        return config

    @classmethod
    def fields(cls) -> tuple[dataclasses.Field, ...]:
        """The options every job flag, `--help` line and template parameter is generated from."""
        return dataclasses.fields(cls)

    def validate(self) -> None:
        """Required fields and regexes; subclasses add the rules between fields. Raises ConfigError."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata["required"] and value in (None, ""):
                raise ConfigError(f.name, "is required")
            regex = f.metadata["regex"]
            if value is not None and f.metadata["kind"] in ("str", "choice"):
                # A name or path holds at most 64 Ki characters (a 10 MB glob keeps Beam's pattern matcher busy for
                # minutes); free text (a query) at most 1 Mi, BigQuery's own limit.
                limit = 1 << 16 if regex else 1 << 20
                if len(str(value)) > limit:
                    raise ConfigError(f.name, f"is {len(str(value)):,} characters long; at most {limit:,}")
                if regex and not re.match(regex, str(value)):
                    raise ConfigError(f.name, f"{value!r} does not match {regex}")
        if getattr(self, "batch_bytes", 1024) < 1024:
            raise ConfigError("batch_bytes", "must be at least 1024")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def is_default(self, name: str) -> bool:
        f = next(f for f in dataclasses.fields(self) if f.name == name)
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        return getattr(self, name) == default


def _parse(field: dataclasses.Field, value: Any) -> Any:
    kind = field.metadata["kind"]
    if value is None:
        return None
    try:
        if kind == "json":
            return json.loads(value) if isinstance(value, str) else value
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError("booleans are not integers")
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            return value if isinstance(value, bool) else parse_bool(value)
        return str(value)
    except (ValueError, TypeError) as e:
        raise ConfigError(field.name, f"cannot parse {value!r} as {kind}: {e}") from e


def parse_bool(text: str) -> bool:
    """"true" or "false" (any case), as flags and template parameters spell booleans; ValueError otherwise."""
    if str(text).lower() not in ("true", "false"):
        raise ValueError(f"expected true or false, got {text!r}")
    return str(text).lower() == "true"


def check_column_types(column_types: Any) -> None:
    if not isinstance(column_types, dict) or any(t not in TYPES for t in column_types.values()):
        raise ConfigError("column_types", f"must map column names to one of {TYPES}")
