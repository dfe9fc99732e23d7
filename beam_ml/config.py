"""The run configuration: one frozen dataclass, loaded from YAML and overridden by flags of the same names.

Config flows one way: YAML file / flags (strings) → `PipelineConfig` (parsed and validated here, before any work)
→ transform constructors. Every field is flat so that a Flex Template parameter or a `--flag` can override it;
structured fields (`split_buckets`, `eval_*`, `hyperparameters`, `column_types`) take JSON on the command line.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re
from typing import Any, Mapping, Optional

import yaml

from beam_ml import fileutil
from beam_ml.records import TYPES


class ConfigError(ValueError):
    """A configuration value is wrong; the message starts with the option's name (`--name: ...`)."""

    def __init__(self, name: str, message: str):
        super().__init__(f"--{name}: {message}")
        self.option = name


def _field(default: Any = dataclasses.MISSING, *, help: str, kind: str = "str", regex: Optional[str] = None,
           required: bool = False) -> Any:
    metadata = {"help": help, "kind": kind, "regex": regex, "required": required}
    if isinstance(default, (dict, list)):
        frozen = default
        return dataclasses.field(default_factory=lambda: json.loads(json.dumps(frozen)), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


ANOMALY_POLICIES = ("fail", "warn")
COLUMN_NAME_REGEX = r"^[A-Za-z_][A-Za-z0-9_]*$"
RESERVED_SPLIT_NAMES = ("dead_letter", "records_read", "transform_fn")


class JobConfig:
    """Base of a job's frozen config dataclass: loading from YAML plus overrides, and the per-field checks.

    Each field is declared once with `_field` (help, kind, regex, required); that declaration gives the job's
    flags, its `--help`, its Flex Template parameters and the checks below.
    """

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
        values.update({k: v for k, v in overrides.items() if v is not None})
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
            if regex and value is not None and f.metadata["kind"] in ("str", "choice") and \
                    not re.match(regex, str(value)):
                raise ConfigError(f.name, f"{value!r} does not match {regex}")
        if getattr(self, "batch_bytes", 1024) < 1024:
            raise ConfigError("batch_bytes", "must be at least 1024")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def is_default(self, name: str) -> bool:
        f = next(f for f in dataclasses.fields(self) if f.name == name)
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        return getattr(self, name) == default


BIGQUERY_TABLE_REGEX = r"^[a-z][a-z0-9-]{4,61}[a-z0-9][:.][A-Za-z0-9_]{1,1024}\.[A-Za-z0-9_]{1,1024}$"  # project:ds.t
RUN_ID_REGEX = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
INPUT_HELP = ("What to read: a file glob (local path or gs://, e.g. data/*.csv) of CSV with a header, JSON Lines "
              "(.jsonl), Parquet (.parquet), TFRecord of tf.Example (.tfrecord[.gz]) or images in class folders "
              "(data/*/*.jpg), by extension; a database, postgresql://user@host:port/db or mysql://user@host:port/db "
              "(no password: see input_password_env), with input_table or input_query; or BigQuery, "
              "bigquery:project.dataset.table or bigquery:project with input_query")
SQL_IDENTIFIER_REGEX = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$"
# A database's schema.table, or BigQuery's dataset.table / project.dataset.table (projects may hold - and :).
TABLE_REGEX = r"^[A-Za-z0-9_][A-Za-z0-9_:.-]*$"
BATCH_BYTES_HELP = "Bytes of CSV parsed into one Arrow RecordBatch."
COLUMN_TYPES_HELP = ('Column types as JSON ({"col": "int"|"float"|"string"}); columns not listed are inferred '
                     "from a sample of the first file.")


@dataclasses.dataclass(frozen=True)
class SourceConfig(JobConfig):
    """The input options every job shares (`beam_ml.inputs.resolve_source` turns them into a source)."""

    input: Optional[str] = _field(None, regex=r"^\S+$", help=INPUT_HELP + ".")
    input_table: Optional[str] = _field(None, regex=TABLE_REGEX,
                                        help="Table to read from a database or BigQuery input (schema.table or "
                                             "dataset.table).")
    input_query: Optional[str] = _field(None, help="Query to read from a database or BigQuery input instead of a "
                                                   "table. Span placeholders (@span_begin_timestamp, "
                                                   "@span_end_timestamp, @span_yyyymmdd_utc) are bound from --spans "
                                                   "A-B, where a span is a UTC day counted from 1970-01-01.")
    input_partition_column: Optional[str] = _field(None, regex=COLUMN_NAME_REGEX,
                                                   help="Numeric or date column whose value ranges divide a database "
                                                        "read into input_partitions parallel reads.")
    input_partitions: int = _field(1, kind="int", regex=r"^[0-9]+$",
                                   help="Parallel reads of a database input (ranges of input_partition_column).")
    input_password_env: Optional[str] = _field("BEAM_ML_DB_PASSWORD", regex=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                               help="Environment variable holding the database password (read on "
                                                    "the workers too; never logged or recorded).")
    input_password_file: Optional[str] = _field(None, regex=r"^\S+$",
                                                help="File holding the database password (e.g. a mounted secret); "
                                                     "wins over input_password_env.")
    input_bigquery_method: str = _field("DIRECT_READ", kind="choice", regex=r"^(DIRECT_READ|EXPORT)$",
                                        help="How a BigQuery input is read: DIRECT_READ (the Storage Read API) or "
                                             "EXPORT (an export job to --temp_location).")
    input_dvc_repo: Optional[str] = _field(None, regex=r"^\S+$",
                                           help="Git repository (URL or path) in which input is a DVC-tracked file.")
    input_dvc_rev: Optional[str] = _field(None, regex=r"^\S+$",
                                          help="Git revision of input_dvc_repo to read the DVC-tracked input at "
                                               "(default: the repository's HEAD).")
    spans: str = _field("latest", regex=r"^(latest|last:[1-9][0-9]*|[0-9]+-[0-9]+)$",
                        help="Which spans an input pattern with {SPAN} or {YYYY}{MM}{DD} reads: latest, last:N (the "
                             "newest N) or A-B (inclusive).")
    input_version: Optional[int] = _field(None, kind="int", regex=r"^[0-9]+$",
                                          help="Version to read of each span ({VERSION} in the input pattern); "
                                               "default: each span's newest.")

    def validate(self) -> None:
        super().validate()
        if self.input_table and self.input_query:
            raise ConfigError("input_query", "give input_table or input_query, not both")
        if self.input_partitions < 1:
            raise ConfigError("input_partitions", "must be at least 1")
        if self.input_partitions > 1 and not self.input_partition_column:
            raise ConfigError("input_partition_column", "is required with input_partitions > 1")
        if self.input_dvc_rev and not self.input_dvc_repo:
            raise ConfigError("input_dvc_rev", "needs input_dvc_repo")
        from beam_ml.sql_source import is_database_url
        database = bool(self.input) and is_database_url(self.input)
        if self.input_dvc_repo and (database or (self.input or "").startswith("bigquery:")):
            raise ConfigError("input_dvc_repo", "applies to a file input only (a path inside the repo)")
        if database and self.input_table and not re.match(SQL_IDENTIFIER_REGEX, self.input_table):
            raise ConfigError("input_table", f"{self.input_table!r} is not a plain SQL identifier (letters, "
                                             f"digits and _, dotted for schema.table)")

    def to_dict(self) -> dict[str, Any]:
        """The options as recorded in the run record: a git URL's user and token masked."""
        from beam_ml.dvc_source import masked_repo
        values = super().to_dict()
        if self.input_dvc_repo:
            values["input_dvc_repo"] = masked_repo(self.input_dvc_repo)
        return values


@dataclasses.dataclass(frozen=True)
class PipelineConfig(SourceConfig):
    """Everything one training run needs. Field metadata drives the flags, `--help` and the template metadata."""

    input_splits: Optional[dict] = _field(None, kind="json",
                                          help='Inputs already divided into splits, instead of input: JSON of split '
                                               'name to file glob, e.g. {"train": "data/train/*.csv", "eval": '
                                               '"data/eval/*.csv"}. No hashing.')
    # Not `label`: Beam's Dataflow options already own `--label` (an alias of `--labels`).
    label_key: str = _field(None, required=True, regex=COLUMN_NAME_REGEX,
                            help="Name of the raw label column; the preprocessing_fn outputs the transformed label "
                                 "under the same name.")
    module: str = _field(None, required=True, regex=r"^\S+$",
                         help="User module with preprocessing_fn(inputs) and run_fn(fn_args): a dotted module "
                              "name (transforms.penguins) or a path to a .py file.")
    output_dir: str = _field(None, required=True, regex=r"^\S+$",
                             help="Base directory for runs; each run writes only under <output_dir>/<run_id>/.")
    serving_dir: str = _field(None, required=True, regex=r"^\S+$",
                              help="TF Serving base directory; blessed models are pushed to <serving_dir>/<version>/.")
    run_id: Optional[str] = _field(None, regex=RUN_ID_REGEX,
                                   help="Run id (default: UTC timestamp plus a short random suffix).")
    split_key: Optional[str] = _field(None, regex=COLUMN_NAME_REGEX,
                                      help="Feature whose value is hashed (sha256) to pick the split; default: the "
                                           "whole record (its typed values, the same for any spelling of them).")
    leakage_key: Optional[str] = _field(None, regex=COLUMN_NAME_REGEX,
                                        help="Column whose values (users, patients, devices) must not occur in more "
                                             "than one split; the run record counts those that do.")
    split_buckets: dict = _field({"train": 2, "eval": 1}, kind="json",
                                 help='Split names and hash bucket weights as JSON, e.g. {"train": 2, "eval": 1}. '
                                      "Must contain train and eval.")
    split_time_key: Optional[str] = _field(None, regex=COLUMN_NAME_REGEX,
                                           help="Split by time instead of by hash: the timestamp column (unix "
                                                "seconds, or ISO 8601 text in UTC) compared with "
                                                "split_time_cutoffs.")
    split_time_cutoffs: dict = _field({}, kind="json",
                                      help='Time split: each split takes the rows before its cutoff (and from the '
                                           'previous one); the last split\'s cutoff is null, e.g. '
                                           '{"train": "2019-06-01", "eval": null}. Cutoffs are ISO 8601 (UTC) or unix '
                                           "seconds.")
    column_types: dict = _field({}, kind="json", help=COLUMN_TYPES_HELP)
    window_key: Optional[str] = _field(None, regex=COLUMN_NAME_REGEX,
                                       help="Sequence models: train and evaluate on windows of each key's rows "
                                            "(e.g. a sensor id) in time order instead of on single rows. Needs "
                                            "window_time_key and window_length.")
    window_time_key: Optional[str] = _field(None, regex=COLUMN_NAME_REGEX,
                                            help="The int column (unix seconds) that orders a key's rows.")
    window_length: Optional[int] = _field(None, kind="int", regex=r"^[0-9]+$", help="Rows per window.")
    window_stride: int = _field(1, kind="int", regex=r"^[0-9]+$", help="A window every this many rows.")
    window_max_gap: Optional[float] = _field(None, kind="float", regex=r"^[0-9.]+$",
                                             help="A gap of more than this many seconds between a key's rows starts "
                                                  "a new window (default: no limit).")
    schema: Optional[str] = _field(None, regex=r"^\S+\.pbtxt$",
                                   help="A schema.pbtxt to validate against; default: infer it from train statistics.")
    drift_baseline: Optional[str] = _field(None, regex=r"^\S+$",
                                           help="Statistics (FeatureStats.pb) of a previous run's train split to "
                                                "check drift against.")
    drift_threshold: float = _field(0.3, kind="float", regex=r"^[0-9.]+$",
                                    help="Drift threshold: L-infinity distance for categorical features, "
                                         "Jensen-Shannon divergence for numeric ones.")
    anomaly_policy: str = _field("fail", kind="choice", regex=r"^(fail|warn)$",
                                 help="What anomalies do: 'fail' stops before training, 'warn' records and continues.")
    eval_metrics: list = _field(["ExampleCount"], kind="json",
                                help='TFMA metric class names as JSON, e.g. ["ExampleCount", "AUC"].')
    eval_slices: list = _field([[]], kind="json",
                               help='Slices as JSON lists of feature names; [] is the overall slice, '
                                    'e.g. [[], ["island"]].')
    eval_thresholds: dict = _field({}, kind="json",
                                   help='Value thresholds as JSON, e.g. {"auc": {"lower": 0.9}}.')
    eval_change_thresholds: dict = _field({}, kind="json",
                                          help='Thresholds against the pushed baseline model as JSON, e.g. '
                                               '{"auc": {"direction": "higher", "absolute": -0.01}}.')
    hyperparameters: dict = _field({}, kind="json", help="Hyperparameters passed to run_fn as JSON.")
    seed: int = _field(42, kind="int", regex=r"^[0-9]+$", help="Random seed for training.")
    train_min_ram: str = _field("4GB", regex=r"^[0-9]+(\.[0-9]+)?(MB|MiB|GB|GiB)$",
                                help="Memory the training step needs (a Beam resource hint; Dataflow picks a "
                                     "worker with at least this much).")
    temp_dir: Optional[str] = _field(None, regex=r"^\S+$",
                                     help="Scratch directory for tf.Transform (default: <run dir>/tmp).")
    batch_bytes: int = _field(8 << 20, kind="int", regex=r"^[0-9]+$", help=BATCH_BYTES_HELP)

    def validate(self) -> None:
        """Checks each field and the rules between fields; raises ConfigError naming the option."""
        super().validate()
        if self.anomaly_policy not in ANOMALY_POLICIES:
            raise ConfigError("anomaly_policy", f"must be one of {ANOMALY_POLICIES}, got {self.anomaly_policy!r}")
        if bool(self.input) == bool(self.input_splits):
            raise ConfigError("input", "give exactly one of --input and --input_splits")
        if self.input_splits is not None:
            if not isinstance(self.input_splits, dict) or \
                    not all(isinstance(v, str) and v.strip() for v in self.input_splits.values()):
                raise ConfigError("input_splits", "must be a JSON object of split name to file glob")
            _check_split_names("input_splits", self.input_splits)
            # Options that choose or split the rows of one input mean nothing to inputs already split.
            for name in ("split_key", "split_buckets", "split_time_key", "input_table", "input_query",
                         "input_dvc_repo", "spans", "input_version"):
                if not self.is_default(name):
                    raise ConfigError(name, "does not apply to --input_splits (files already split, read whole)")
        if self.split_time_key:
            for name in ("split_key", "split_buckets"):
                if not self.is_default(name):
                    raise ConfigError(name, "does not apply to a time split (--split_time_key): the split names "
                                            "come from --split_time_cutoffs")
            _check_split_names("split_time_cutoffs", self.split_time_cutoffs)
            try:
                cutoffs = [parse_time(v) if v is not None else None for v in self.split_time_cutoffs.values()]
            except ValueError as e:
                raise ConfigError("split_time_cutoffs", str(e)) from e
            if cutoffs[-1] is not None or None in cutoffs[:-1]:
                raise ConfigError("split_time_cutoffs", "every split but the last needs a cutoff; the last's is null")
            if cutoffs[:-1] != sorted(cutoffs[:-1]) or len(set(cutoffs[:-1])) != len(cutoffs) - 1:
                raise ConfigError("split_time_cutoffs", "cutoffs must increase")
        elif self.split_time_cutoffs:
            raise ConfigError("split_time_cutoffs", "needs --split_time_key")
        buckets = self.split_buckets
        _check_split_names("split_buckets", buckets)
        for name, weight in buckets.items():
            if not isinstance(weight, int) or isinstance(weight, bool) or weight <= 0:
                raise ConfigError("split_buckets", f"weight of {name!r} must be a positive integer, got {weight!r}")
        if sum(buckets.values()) >= 2 ** 31:
            raise ConfigError("split_buckets", "weights must sum to less than 2**31")
        if not isinstance(self.eval_metrics, list) or not self.eval_metrics or \
                not all(isinstance(m, str) for m in self.eval_metrics):
            raise ConfigError("eval_metrics", "must be a non-empty list of TFMA/Keras metric class names")
        if not isinstance(self.eval_slices, list) or \
                not all(isinstance(s, list) and all(isinstance(c, str) for c in s) for s in self.eval_slices):
            raise ConfigError("eval_slices", "must be a list of lists of feature names")
        for name in ("eval_thresholds", "eval_change_thresholds", "hyperparameters"):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(name, "must be a JSON object")
        for name, bounds in self.eval_thresholds.items():
            if not isinstance(bounds, dict) or not bounds or not set(bounds) <= {"lower", "upper"}:
                raise ConfigError("eval_thresholds", f"{name}: give lower and/or upper, got {bounds!r}")
        for name, change in self.eval_change_thresholds.items():
            if not isinstance(change, dict) or change.get("direction") not in ("higher", "lower") or \
                    not set(change) <= {"direction", "absolute", "relative"} or len(change) < 2:
                raise ConfigError("eval_change_thresholds",
                                  f"{name}: give direction (higher|lower) and absolute and/or relative, "
                                  f"got {change!r}")
        windowing = {"window_key": self.window_key, "window_time_key": self.window_time_key,
                     "window_length": self.window_length}
        if any(v is not None for v in windowing.values()):
            for name, value in windowing.items():
                if value is None:
                    raise ConfigError(name, "is required for windows (window_key, window_time_key and "
                                            "window_length go together)")
            if self.window_length < 2:
                raise ConfigError("window_length", "must be at least 2")
            if self.window_stride < 1:
                raise ConfigError("window_stride", "must be at least 1")
            if self.window_max_gap is not None and not (math.isfinite(self.window_max_gap) and self.window_max_gap > 0):
                raise ConfigError("window_max_gap", "must be a positive number of seconds")
        if not math.isfinite(self.drift_threshold) or self.drift_threshold <= 0:
            raise ConfigError("drift_threshold", "must be a positive finite number")
        if not 0 <= self.seed < 2 ** 32:
            raise ConfigError("seed", "must be in [0, 2**32)")
        _check_column_types(self.column_types)


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
        return str(value)
    except (ValueError, TypeError) as e:
        raise ConfigError(field.name, f"cannot parse {value!r} as {kind}: {e}") from e


def _check_split_names(option: str, splits: Any) -> None:
    if not isinstance(splits, dict) or not {"train", "eval"} <= set(splits):
        raise ConfigError(option, f"must be a mapping containing train and eval, got {splits!r}")
    for name in splits:
        if name in RESERVED_SPLIT_NAMES:
            raise ConfigError(option, f"{name!r} is reserved for the pipeline's own outputs")
        if not re.match(r"^[a-z][a-z0-9_]*$", str(name)):
            raise ConfigError(option, f"split name {name!r} must be lower_snake_case")


def parse_time(value: Any) -> float:
    """Unix seconds from a number or an ISO 8601 date/time (UTC unless it names an offset)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        moment = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{value!r} is neither unix seconds nor an ISO 8601 date/time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _check_column_types(column_types: Any) -> None:
    if not isinstance(column_types, dict) or any(t not in TYPES for t in column_types.values()):
        raise ConfigError("column_types", f"must map column names to one of {TYPES}")


@dataclasses.dataclass(frozen=True)
class PredictConfig(SourceConfig):
    """One batch prediction run: which data (the `SourceConfig` options), which model, where the predictions go."""

    key_column: str = _field(None, required=True, regex=COLUMN_NAME_REGEX,
                             help="Column that identifies a row; each prediction is written with its value.")
    output_dir: str = _field(None, required=True, regex=r"^\S+$",
                             help="Base directory for runs; predictions go to <output_dir>/<run_id>/predictions/.")
    serving_dir: Optional[str] = _field(None, regex=r"^\S+$",
                                        help="TF Serving base directory: the newest version in it is used "
                                             "(give this or model_dir).")
    model_dir: Optional[str] = _field(None, regex=r"^\S+$",
                                      help="A specific SavedModel directory, e.g. <serving_dir>/1732800000.")
    run_id: Optional[str] = _field(None, regex=RUN_ID_REGEX,
                                   help="Run id (default: UTC timestamp plus a short random suffix).")
    column_types: dict = _field({}, kind="json", help=COLUMN_TYPES_HELP + " The model's raw schema, when it has "
                                                                          "one, types its own features.")
    batch_bytes: int = _field(8 << 20, kind="int", regex=r"^[0-9]+$", help=BATCH_BYTES_HELP)
    bigquery_table: Optional[str] = _field(None, regex=BIGQUERY_TABLE_REGEX,
                                           help="Also write the predictions to this BigQuery table "
                                                "(project:dataset.table); created if needed, rows appended.")
    bigquery_method: str = _field("FILE_LOADS", kind="choice", regex=r"^(FILE_LOADS|STREAMING_INSERTS)$",
                                  help="How rows reach BigQuery: FILE_LOADS (load jobs from --temp_location) or "
                                       "STREAMING_INSERTS.")

    def validate(self) -> None:
        super().validate()
        if not self.input:
            raise ConfigError("input", "is required")
        if bool(self.serving_dir) == bool(self.model_dir):
            raise ConfigError("serving_dir" if not self.model_dir else "model_dir",
                              "give exactly one of --serving_dir (newest version) and --model_dir")
        _check_column_types(self.column_types)


PUBSUB_TOPIC_REGEX = r"^projects/[^/\s]+/topics/[^/\s]+$"
DETECTORS = ("model", "context", "zscore", "robust_zscore", "iqr")
_DETECTOR = "(" + "|".join(DETECTORS) + r")(:[0-9]+(\.[0-9]+)?)?"
DETECTOR_REGEX = f"^{_DETECTOR}(,{_DETECTOR})*$"


@dataclasses.dataclass(frozen=True)
class DetectConfig(JobConfig):
    """The streaming anomaly detection job: where telemetry comes from, what scores it, where alerts go."""

    subscription: str = _field(None, required=True, regex=r"^projects/[^/\s]+/subscriptions/[^/\s]+$",
                               help="Pub/Sub subscription with the telemetry, projects/<p>/subscriptions/<s>: one "
                                    'JSON object per message, {"sensor_id": ..., "timestamp": unix seconds or ISO '
                                    "8601, <channel>: number, ...}. Event time is the message's timestamp.")
    detector: str = _field("model", regex=DETECTOR_REGEX,
                           help="What scores each window: model (the pushed window model, see serving_dir), context "
                                "(beam_ml's online detector: sequence memory, time-of-day profile, anomaly "
                                "likelihood), or Beam's online detectors zscore, robust_zscore, iqr (one per channel, "
                                "apache_beam.ml.anomaly). Several, comma-separated, are an ensemble that votes (see "
                                "vote). An online detector may carry its alert threshold, e.g. zscore:4 (defaults: "
                                "context 0.5, zscore and robust_zscore 3, iqr 1.5).")
    vote: str = _field("any", kind="choice", regex=r"^(any|majority|all)$",
                       help="How an ensemble's verdicts on a window make an alert: any member alerting, a majority, "
                            "or all of them.")
    channels: Optional[str] = _field(None, regex=r"^[A-Za-z_][A-Za-z0-9_]*(,[A-Za-z_][A-Za-z0-9_]*)*$",
                                     help="The telemetry's channels, comma-separated, when no model is among the "
                                          "detectors (a model brings its own channels and windows); each reading is "
                                          "then scored as it is released, in event-time order.")
    serving_dir: Optional[str] = _field(None, regex=r"^\S+$",
                                        help="TF Serving base directory of a window model (trained with "
                                             "--window_key), for the model detector: the newest version scores, and "
                                             "a newly pushed one is picked up without a restart.")
    output_dir: str = _field(None, required=True, regex=r"^\S+$",
                             help="Base directory for run records; this run's goes to <output_dir>/<run_id>/.")
    run_id: Optional[str] = _field(None, regex=RUN_ID_REGEX,
                                   help="Run id (default: UTC timestamp plus a short random suffix).")
    allowed_lateness: float = _field(60.0, kind="float", regex=r"^[0-9.]+$",
                                     help="Seconds a reading may arrive after the watermark passed it and still be "
                                          "put in order; later ones go to the dead-letter sink as late, counted.")
    release_every: float = _field(0.0, kind="float", regex=r"^[0-9.]+$",
                                  help="Seconds of event time over which a sensor's readings are released to windows "
                                       "together (one timer per span instead of per reading; 0: per reading). Adds "
                                       "up to this much latency, and readings more than allowed_lateness behind the "
                                       "watermark within a span count as late.")
    model_poll_seconds: float = _field(10.0, kind="float", regex=r"^[0-9.]+$",
                                       help="How often (seconds) scoring looks for a newly pushed model version.")
    alerts_topic: Optional[str] = _field(None, regex=PUBSUB_TOPIC_REGEX,
                                         help="Pub/Sub topic for alerts (JSON per alert), projects/<p>/topics/<t>.")
    alerts_table: Optional[str] = _field(None, regex=BIGQUERY_TABLE_REGEX,
                                         help="BigQuery table for alerts (project:dataset.table), streaming inserts.")
    alerts_dir: Optional[str] = _field(None, regex=r"^\S+$",
                                       help="Directory for alert files (JSON Lines per file_window of event time).")
    dead_letter_topic: Optional[str] = _field(None, regex=PUBSUB_TOPIC_REGEX,
                                              help="Pub/Sub topic for dead letters: malformed, invalid and late "
                                                   "messages with the reason (JSON).")
    dead_letter_dir: Optional[str] = _field(None, regex=r"^\S+$",
                                            help="Directory for dead-letter files (JSON Lines per file_window).")
    file_window: float = _field(60.0, kind="float", regex=r"^[0-9.]+$",
                                help="Seconds of event time per alert and dead-letter file.")

    def detectors(self) -> list[tuple[str, Optional[float]]]:
        """The detector option as (name, threshold or None) pairs, in the order given."""
        return [(name, float(threshold) if threshold else None)
                for name, _, threshold in (member.partition(":") for member in self.detector.split(","))]

    def validate(self) -> None:
        super().validate()
        if not (self.alerts_topic or self.alerts_table or self.alerts_dir):
            raise ConfigError("alerts_topic", "give at least one of --alerts_topic, --alerts_table, --alerts_dir")
        if not (self.dead_letter_topic or self.dead_letter_dir):
            raise ConfigError("dead_letter_topic", "give --dead_letter_topic and/or --dead_letter_dir: invalid "
                                                   "messages are kept, never dropped")
        members = self.detectors()
        names = [name for name, _ in members]
        if len(set(names)) < len(names):
            raise ConfigError("detector", f"names a detector twice: {self.detector}")
        if ("model", None) not in members and "model" in names:
            raise ConfigError("detector", "the model's threshold is calibrated in training and travels with it; "
                                          "give model without one")
        if "model" in names:
            if not self.serving_dir:
                raise ConfigError("serving_dir", "is required when the detector includes model")
            if self.channels:
                raise ConfigError("channels", "come from the model when the detector includes model; leave it out")
        else:
            if not self.channels:
                raise ConfigError("channels", "is required when no model is among the detectors")
            if self.serving_dir:
                raise ConfigError("serving_dir", "is only read by the model detector, which --detector leaves out")
        if len(members) == 1 and not self.is_default("vote"):
            raise ConfigError("vote", "applies to an ensemble: give --detector several detectors")
        for name in ("allowed_lateness", "release_every", "model_poll_seconds", "file_window"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (value == 0 and name == "file_window"):
                raise ConfigError(name, f"must be a {'positive' if name == 'file_window' else 'non-negative'} "
                                        f"number of seconds, got {value}")
