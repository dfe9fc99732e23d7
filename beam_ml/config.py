"""The run configuration: one frozen dataclass, loaded from YAML and overridden by flags of the same names.

Config flows one way: YAML file / flags (strings) → `PipelineConfig` (parsed and validated here, before any work)
→ transform constructors. Every field is flat so that a Flex Template parameter or a `--flag` can override it;
structured fields (`split_buckets`, `eval_*`, `hyperparameters`, `column_types`) take JSON on the command line.
"""
from __future__ import annotations

import dataclasses
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


BIGQUERY_TABLE_REGEX = r"^[a-z][a-z0-9-]{4,61}[a-z0-9][:.][A-Za-z0-9_]{1,1024}\.[A-Za-z0-9_]{1,1024}$"  # project:ds.t
RUN_ID_REGEX = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
INPUT_HELP = ("Input file glob (local path or gs://), e.g. data/*.csv: CSV with a header, JSON Lines (.jsonl), "
              "Parquet (.parquet) or TFRecord of tf.Example (.tfrecord[.gz]), by extension")
BATCH_BYTES_HELP = "Bytes of CSV parsed into one Arrow RecordBatch."
COLUMN_TYPES_HELP = ('Column types as JSON ({"col": "int"|"float"|"string"}); columns not listed are inferred '
                     "from a sample of the first file.")


@dataclasses.dataclass(frozen=True)
class PipelineConfig(JobConfig):
    """Everything one training run needs. Field metadata drives the flags, `--help` and the template metadata."""

    input: str = _field(None, required=True, regex=r"^\S+$", help=INPUT_HELP + ".")
    spans: str = _field("latest", regex=r"^(latest|last:[1-9][0-9]*|[0-9]+-[0-9]+)$",
                        help="Which spans an input pattern with {SPAN} or {YYYY}{MM}{DD} reads: latest, last:N (the "
                             "newest N) or A-B (inclusive).")
    input_version: Optional[int] = _field(None, kind="int", regex=r"^[0-9]+$",
                                          help="Version to read of each span ({VERSION} in the input pattern); "
                                               "default: each span's newest.")
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
    column_types: dict = _field({}, kind="json", help=COLUMN_TYPES_HELP)
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
        buckets = self.split_buckets
        if not isinstance(buckets, dict) or not {"train", "eval"} <= set(buckets):
            raise ConfigError("split_buckets", f"must be a mapping containing train and eval, got {buckets!r}")
        for name, weight in buckets.items():
            if name in RESERVED_SPLIT_NAMES:
                raise ConfigError("split_buckets", f"{name!r} is reserved for the pipeline's own outputs")
            if not re.match(r"^[a-z][a-z0-9_]*$", str(name)):
                raise ConfigError("split_buckets", f"split name {name!r} must be lower_snake_case")
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


def _check_column_types(column_types: Any) -> None:
    if not isinstance(column_types, dict) or any(t not in TYPES for t in column_types.values()):
        raise ConfigError("column_types", f"must map column names to one of {TYPES}")


@dataclasses.dataclass(frozen=True)
class PredictConfig(JobConfig):
    """One batch prediction run: which data, which model, where the predictions go."""

    input: str = _field(None, required=True, regex=r"^\S+$", help=INPUT_HELP + ": the rows to predict.")
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
        if bool(self.serving_dir) == bool(self.model_dir):
            raise ConfigError("serving_dir" if not self.model_dir else "model_dir",
                              "give exactly one of --serving_dir (newest version) and --model_dir")
        _check_column_types(self.column_types)
