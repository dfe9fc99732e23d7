"""The training job's options (`PipelineConfig`).
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Optional

from beam_ml.config.base import (
    COLUMN_NAME_REGEX, RUN_ID_REGEX, check_column_types, metadata_password_env_option, metadata_store_option, option)
from beam_ml.config.source import BATCH_BYTES_HELP, COLUMN_TYPES_HELP, SourceConfig
from beam_ml.config.tuning import TuningSpec
from beam_ml.core.errors import ConfigError
from beam_ml.core.times import parse_time

ANOMALY_POLICIES = ("fail", "warn")
RESERVED_SPLIT_NAMES = ("dead_letter", "records_read", "transform_fn")
# What `fairness_features` computes on every slice: TFMA's rates at one decision threshold, by metric name.
FAIRNESS_THRESHOLD = 0.5
FAIRNESS_METRICS = {"fpr@0.5": "FPR", "fnr@0.5": "FNR"}


@dataclasses.dataclass(frozen=True)
class PipelineConfig(SourceConfig):
    """Everything one training run needs. Field metadata drives the flags, `--help` and the template metadata."""

    input_splits: Optional[dict] = option(None, kind="json",
                                          help='Inputs already divided into splits, instead of input: JSON of split '
                                               'name to file glob, e.g. {"train": "data/train/*.csv", "eval": '
                                               '"data/eval/*.csv"}. No hashing.')
    # Not `label`: Beam's Dataflow options already own `--label` (an alias of `--labels`).
    label_key: str = option(None, required=True, regex=COLUMN_NAME_REGEX,
                            help="Name of the raw label column; the preprocessing_fn outputs the transformed label "
                                 "under the same name.")
    module: str = option(None, required=True, regex=r"^\S+$",
                         help="User module with preprocessing_fn(inputs) and run_fn(fn_args): a dotted module "
                              "name (transforms.penguins) or a path to a .py file.")
    output_dir: str = option(None, required=True, regex=r"^\S+$",
                             help="Base directory for runs; each run writes only under <output_dir>/<run_id>/.")
    serving_dir: str = option(None, required=True, regex=r"^\S+$",
                              help="TF Serving base directory; blessed models are pushed to <serving_dir>/<version>/.")
    run_id: Optional[str] = option(None, regex=RUN_ID_REGEX,
                                   help="Run id (default: UTC timestamp plus a short random suffix).")
    split_key: Optional[str] = option(None, regex=COLUMN_NAME_REGEX,
                                      help="Feature whose value is hashed (sha256) to pick the split; default: the "
                                           "whole record (its typed values, the same for any spelling of them).")
    leakage_key: Optional[str] = option(None, regex=COLUMN_NAME_REGEX,
                                        help="Column whose values (users, patients, devices) must not occur in more "
                                             "than one split; the run record counts those that do.")
    split_buckets: dict = option({"train": 2, "eval": 1}, kind="json",
                                 help='Split names and hash bucket weights as JSON, e.g. {"train": 2, "eval": 1}. '
                                      "Must contain train and eval.")
    split_time_key: Optional[str] = option(None, regex=COLUMN_NAME_REGEX,
                                           help="Split by time instead of by hash: the timestamp column (unix "
                                                "seconds, or ISO 8601 text in UTC) compared with "
                                                "split_time_cutoffs.")
    split_time_cutoffs: dict = option({}, kind="json",
                                      help='Time split: each split takes the rows before its cutoff (and from the '
                                           'previous one); the last split\'s cutoff is null, e.g. '
                                           '{"train": "2019-06-01", "eval": null}. Cutoffs are ISO 8601 (UTC) or unix '
                                           "seconds.")
    column_types: dict = option({}, kind="json", help=COLUMN_TYPES_HELP)
    window_key: Optional[str] = option(None, regex=COLUMN_NAME_REGEX,
                                       help="Sequence models: train and evaluate on windows of each key's rows "
                                            "(e.g. a sensor id) in time order instead of on single rows. Needs "
                                            "window_time_key and window_length.")
    window_time_key: Optional[str] = option(None, regex=COLUMN_NAME_REGEX,
                                            help="The int column (unix seconds) that orders a key's rows.")
    window_length: Optional[int] = option(None, kind="int", regex=r"^[0-9]+$", help="Rows per window.")
    window_stride: int = option(1, kind="int", regex=r"^[0-9]+$", help="A window every this many rows.")
    window_max_gap: Optional[float] = option(None, kind="float", regex=r"^[0-9.]+$",
                                             help="A gap of more than this many seconds between a key's rows starts "
                                                  "a new window (default: no limit).")
    schema: Optional[str] = option(None, regex=r"^\S+\.pbtxt$",
                                   help="A schema.pbtxt to validate against; default: infer it from train statistics.")
    drift_baseline: Optional[str] = option(None, regex=r"^\S+$",
                                           help="Statistics (FeatureStats.pb) of a previous run's train split to "
                                                "check drift against.")
    drift_threshold: float = option(0.3, kind="float", regex=r"^[0-9.]+$",
                                    help="Drift threshold: L-infinity distance for categorical features, "
                                         "Jensen-Shannon divergence for numeric ones.")
    label_set_changed: bool = option(False, kind="bool", regex=r"^(true|false|True|False)$",
                                     help="The label's classes changed on purpose: bless a model even though a split "
                                          "lacks label values the baseline model's had, has values it never saw, or "
                                          "its outputs' shape differs (a label with one value is never blessed).")
    anomaly_policy: str = option("fail", kind="choice", regex=r"^(fail|warn)$",
                                 help="What anomalies do: 'fail' stops before training, 'warn' records and continues.")
    eval_metrics: list = option(["ExampleCount"], kind="json",
                                help='TFMA metric class names as JSON, e.g. ["ExampleCount", "AUC"].')
    eval_slices: list = option([[]], kind="json",
                               help='Slices as JSON lists of feature names; [] is the overall slice, '
                                    'e.g. [[], ["island"]].')
    eval_thresholds: dict = option({}, kind="json",
                                   help='Value thresholds as JSON, e.g. {"auc": {"lower": 0.9}}.')
    eval_change_thresholds: dict = option({}, kind="json",
                                          help='Thresholds against the pushed baseline model as JSON, e.g. '
                                               '{"auc": {"direction": "higher", "absolute": -0.01}}.')
    fairness_features: list = option([], kind="json",
                                     help='Sensitive raw feature columns as JSON, e.g. ["payment_type"]: each of '
                                          'their groups gets the false positive and false negative rates of a '
                                          'binary classifier at a 0.5 threshold, and the report warns when '
                                          'groups differ by more than fairness_max_gap.')
    fairness_max_gap: float = option(0.1, kind="float", regex=r"^[0-9.]+$",
                                     help="The largest difference of a rate between the groups of a fairness "
                                          "feature that passes without a warning.")
    fairness_min_examples: int = option(30, kind="int", regex=r"^[0-9]+$",
                                        help="Groups of a fairness feature with fewer eval examples are shown but "
                                             "left out of the gaps (a rate over a handful of examples is noise); "
                                             "0 compares every group.")
    infra_validation: bool = option(True, kind="bool", regex=r"^(true|false|True|False)$",
                                    help="Before a blessed model is pushed, load it in a fresh process and answer "
                                         "its warm-up requests as TF Serving would; a model that fails is not "
                                         "pushed.")
    warmup_rows: int = option(10, kind="int", regex=r"^[1-9][0-9]*$",
                              help="Eval rows (without the label) in the model's TF Serving warm-up request.")
    export_tflite: bool = option(False, kind="bool", regex=r"^(true|false|True|False)$",
                                 help="Convert the trained model to TFLite (model.tflite beside the SavedModel, "
                                      "tf.Transform graph included) and check it against the SavedModel on "
                                      "tflite_rows eval rows.")
    tflite_quantization: str = option("none", regex=r"^(none|dynamic|float16)$",
                                      help="With export_tflite, also write a quantized variant, "
                                           "model_<kind>.tflite: dynamic (int8 weights) or float16 (float16 "
                                           "weights); none writes only the float model.")
    tflite_max_difference: float = option(1e-4, kind="float", regex=r"^[0-9.]+([eE]-?[0-9]+)?$",
                                          help="The largest difference between an output of the float TFLite "
                                               "model and the SavedModel's that passes the parity check.")
    tflite_on_difference: str = option("flag", regex=r"^(flag|fail)$",
                                       help="What a failed TFLite conversion or parity check does: flag (recorded "
                                            "and reported, the model is still pushed) or fail (not pushed).")
    tflite_rows: int = option(200, kind="int", regex=r"^[1-9][0-9]*$",
                              help="Eval rows (with the label) the TFLite parity check answers.")
    metadata_store: Optional[str] = metadata_store_option("<output_dir>/metadata.sqlite for a local output_dir.")
    metadata_password_env: str = metadata_password_env_option()
    no_cache: bool = option(False, kind="bool", regex=r"^(true|false|True|False)$",
                            help="Compute everything even when an earlier successful run had the same data, code, "
                                 "config and library versions (by default such a run is reused: nothing is "
                                 "recomputed and nothing new is pushed).")
    hyperparameters: dict = option({}, kind="json", help="Hyperparameters passed to run_fn as JSON.")
    tuning: dict = option({}, kind="json",
                          help='A hyperparameter search before training, as JSON: {"study": name, "objective": a '
                               'metric run_fn returns, "direction": "maximize"|"minimize", "trials": 8, '
                               '"parallelism": 4, "pruning": "median"|"none", "search_space": {"learning_rate": {"low": 0.001, "high": 0.1, '
                               '"log": true}, "units": {"low": 4, "high": 64, "int": true}, "activation": '
                               '{"choices": ["relu", "tanh"]}}}. Trials run as parallel steps of the job; the best '
                               "trial's values (over hyperparameters) train the model; a rerun with the same study "
                               "continues it; a Keras trial worse than the earlier trials' median stops early.")
    seed: int = option(42, kind="int", regex=r"^[0-9]+$", help="Random seed for training.")
    train_min_ram: str = option("4GB", regex=r"^[0-9]+(\.[0-9]+)?(MB|MiB|GB|GiB)$",
                                help="Memory the training step needs (a Beam resource hint; Dataflow picks a "
                                     "worker with at least this much).")
    temp_dir: Optional[str] = option(None, regex=r"^\S+$",
                                     help="Scratch directory for tf.Transform (default: <run dir>/tmp).")
    batch_bytes: int = option(8 << 20, kind="int", regex=r"^[0-9]+$", help=BATCH_BYTES_HELP)

    @property
    def tuning_spec(self) -> Optional[TuningSpec]:
        """The validated `tuning` option, None without one."""
        return TuningSpec.parse(self.tuning, self.seed % 2 ** 31)

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
        if not isinstance(self.fairness_features, list) or \
                not all(isinstance(c, str) for c in self.fairness_features):
            raise ConfigError("fairness_features", "must be a list of feature names")
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
        _ = self.tuning_spec
        check_column_types(self.column_types)


def _check_split_names(option: str, splits: Any) -> None:
    if not isinstance(splits, dict) or not {"train", "eval"} <= set(splits):
        raise ConfigError(option, f"must be a mapping containing train and eval, got {splits!r}")
    for name in splits:
        if name in RESERVED_SPLIT_NAMES:
            raise ConfigError(option, f"{name!r} is reserved for the pipeline's own outputs")
        if not re.match(r"^[a-z][a-z0-9_]*$", str(name)):
            raise ConfigError(option, f"split name {name!r} must be lower_snake_case")
