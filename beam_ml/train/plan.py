"""What the training job resolves when the graph is built: `plan_run` checks everything (input files and their
fingerprints, the record format, the user module, the eval config, the baseline model, the run directory) and fails
with a `ConfigError` naming the option before any work; the `RunPlan` it returns is what `TrainPipeline` wires.
"""
from __future__ import annotations

import dataclasses
import math
import os
import uuid
from typing import Any, Optional

from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from beam_ml.config.train import PipelineConfig
from beam_ml.core.errors import ConfigError
from beam_ml.core.fileutil import absolute, storage_path, unwritable_reason
from beam_ml.core.layout import RunLayout, study_file
from beam_ml.core.records import RecordFormat
from beam_ml.core.run import RunContext, RunManifest
from beam_ml.core.times import parse_time
from beam_ml.core.windowing import WindowSpec
from beam_ml.ingest import spans
from beam_ml.ingest.resolve import require_column, resolve_source
from beam_ml.ingest.source import Source
from beam_ml.ingest.split import GivenSplit, HashSplit, Split, TimeSplit
from beam_ml.lineage.store import check_store
from beam_ml.model.artifact import TENSORFLOW, model_framework
from beam_ml.model.push import latest_model
from beam_ml.train import user_module
from beam_ml.report.read import run_records
from beam_ml.train.cache import cache_keys, model_is_serving, reusable_run, reusable_stages
from beam_ml.train.evaluate import build_eval_config
from beam_ml.train.trainer import module_framework
from beam_ml.train.tuning import load_study, rounds
from beam_ml.train.validate import load_drift_baseline

# What the run record holds before the run computes it (a run that fails early keeps these).
UNCOMPUTED = {"counts": {"read": 0, "dead_letter": 0, "splits": {}}, "anomalies": [], "metrics": {},
              "blessed": False, "pushed_model_dir": None, "leakage": None}


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """A validated config plus everything resolved when the graph is built."""

    config: PipelineConfig
    run: RunContext
    source: Source
    schema: Optional[schema_pb2.Schema]
    drift_baseline: Optional[statistics_pb2.DatasetFeatureStatisticsList]
    baseline_model: Optional[str]
    module: user_module.UserModule
    span_selection: Optional[spans.SpanSelection] = None
    cache_keys: Optional[dict] = None  # beam_ml.train.cache: what each stage's results depend on
    reused_run: Optional[dict] = None  # the record of the earlier run this one reuses, if any
    reused_stages: dict = dataclasses.field(default_factory=dict)  # {stage: the earlier run's record} (cache.py)
    # The reused model is the one serving now: blessed or not, it is not pushed again (not a new version).
    reused_serving_model: bool = False
    study_path: Optional[str] = None  # with tuning: the study's file (beam_ml.train.tuning), and its trials so far
    study_trials: tuple = ()
    framework: str = TENSORFLOW  # what the module's run_fn trains (its FRAMEWORK)
    launch_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def materialized_evaluation(self) -> bool:
        """Whether evaluation scores the models itself (`beam_ml.train.evaluate.AddPredictions`): the candidate or
        the baseline is not a TensorFlow model."""
        return self.framework != TENSORFLOW or (
            self.baseline_model is not None and model_framework(self.baseline_model) != TENSORFLOW)

    @property
    def fmt(self) -> RecordFormat:
        return self.source.fmt

    @property
    def split(self) -> Split:
        config = self.config
        if config.input_splits:
            return GivenSplit(tuple(config.input_splits))
        if config.split_time_key:
            return TimeSplit(tuple((name, None if cutoff is None else parse_time(cutoff))
                                   for name, cutoff in config.split_time_cutoffs.items()), config.split_time_key)
        return HashSplit(tuple(config.split_buckets.items()), config.split_key)

    @property
    def window_spec(self) -> Optional[WindowSpec]:
        """How rows become windows, when the model learns from sequences (`--window_key`); None otherwise."""
        config = self.config
        if not config.window_key:
            return None
        return WindowSpec(config.window_key, config.window_time_key, config.window_length, config.window_stride,
                          config.window_max_gap if config.window_max_gap is not None else math.inf)

    @property
    def push_id(self) -> str:
        """Marks this launch's pushed version (a retried push finds it; a later run reusing the run id does not)."""
        return f"{self.run.run_id}/{self.launch_id}"

    @property
    def serving_model_dir(self) -> str:
        return RunLayout(self.run.run_dir).serving_model

    @property
    def temp_dir(self) -> str:
        return self.config.temp_dir or os.path.join(self.run.run_dir, "tmp")

    def manifest(self) -> RunManifest:
        return self.run.manifest(
            **UNCOMPUTED, inputs=self.source.describe(),
            span_selection=dataclasses.asdict(self.span_selection) if self.span_selection else None,
            record_format={"columns": list(self.fmt.columns), "types": list(self.fmt.types)},
            baseline_model=self.baseline_model, cache_keys=self.cache_keys,
            reused_stages={stage: record["run_dir"] for stage, record in self.reused_stages.items()},
            evaluation_mode=("value and change thresholds against the baseline model" if self.baseline_model
                             else "value thresholds only (first model: no baseline to compare with)"))


def plan_run(config: PipelineConfig) -> RunPlan:
    """Resolves and checks everything the graph needs; raises ConfigError naming the offending option."""
    config = dataclasses.replace(config, **{name: storage_path(getattr(config, name))
                                            for name in ("output_dir", "serving_dir", "temp_dir")})

    problem = unwritable_reason(config.serving_dir)
    if problem:  # found now, not at push time after training
        raise ConfigError("serving_dir", f"cannot push models to {config.serving_dir}: {problem}")
    if config.metadata_store and config.metadata_store != "none":  # the default one is in output_dir, checked below
        if "://" not in config.metadata_store:
            config = dataclasses.replace(config, metadata_store=absolute(config.metadata_store))
        check_store(config.metadata_store, config.metadata_password_env)
    resolved = resolve_source(config, config.column_types)
    fmt = resolved.source.fmt
    require_column(fmt, config.label_key, "label_key")
    if config.leakage_key:
        require_column(fmt, config.leakage_key, "leakage_key")
    if config.split_time_key:
        require_column(fmt, config.split_time_key, "split_time_key")
        if fmt.type_of(config.split_time_key) == "float":  # records hold float32: unix seconds to ~2 minutes
            raise ConfigError("split_time_key", f"{config.split_time_key!r} is a float column, too coarse for "
                                                f"times; type it int or string with --column_types")
    if config.split_key:
        require_column(fmt, config.split_key, "split_key")
        if fmt.type_of(config.split_key) == "float":
            raise ConfigError("split_key", f"{config.split_key!r} is a float column; hash an int or string column")
    if config.window_key:
        _check_windowing(fmt, config)
    for slice_columns in config.eval_slices:
        for column in slice_columns:
            require_column(fmt, column, "eval_slices")
    for column in config.fairness_features:
        require_column(fmt, column, "fairness_features")
    try:
        module = user_module.check(config.module)
    except ValueError as e:
        raise ConfigError("module", str(e)) from e
    _check_preprocessing_inputs(module.load(), fmt, config)
    try:
        framework = module_framework(module.load())
    except ValueError as e:
        raise ConfigError("module", f"{config.module}: {e}") from e
    if framework != TENSORFLOW and config.export_tflite:
        raise ConfigError("export_tflite", f"{config.module} trains a {framework} model (FRAMEWORK); TFLite takes "
                                           f"TensorFlow models only")
    module_length = getattr(module.load(), "WINDOW_LENGTH", None)
    if module_length is not None and module_length != config.window_length:
        raise ConfigError("window_length", f"{config.module} models windows of WINDOW_LENGTH={module_length} rows, "
                                           f"got {config.window_length}")
    unknown = sorted(set(config.column_types) - set(fmt.columns))
    if unknown:
        raise ConfigError("column_types", f"names columns not in the input header: {unknown}")
    try:
        build_eval_config(config.label_key, config.eval_metrics, config.eval_slices, config.eval_thresholds,
                          config.eval_change_thresholds, with_baseline=True,
                          fairness_features=config.fairness_features)
    except ValueError as e:
        raise ConfigError("eval_thresholds", str(e)) from e
    schema = _load_schema(config.schema) if config.schema else None
    drift_baseline = None
    if config.drift_baseline:
        try:
            drift_baseline = load_drift_baseline(config.drift_baseline)
        except Exception as e:
            raise ConfigError("drift_baseline", f"cannot read statistics from {config.drift_baseline}: {e}") from e
    tuning = config.tuning_spec
    study_path = study_file(config.output_dir, tuning.study) if tuning else None
    try:
        study_trials = load_study(study_path) if tuning else []
    except Exception as e:
        raise ConfigError("tuning", f"cannot read study {tuning.study!r} at {study_path}: {e}") from e
    run = RunContext.start("train_pipeline", config.output_dir, config.run_id, config.to_dict())
    baseline_model = latest_model(config.serving_dir)
    # The model depends on the study's trials: those it has, when it is done; when trials remain, on this run's.
    trained_from = (None if not tuning else [(t["number"], t["params"], t["value"]) for t in study_trials]
                    if not rounds(tuning, len(study_trials)) else f"the new trials of run {run.run_id}")
    keys = cache_keys(config, resolved.source.describe(), module, baseline_model, trained_from)
    records = [] if config.no_cache else run_records(config.output_dir)
    reused_run = reusable_run(records, keys, baseline_model)
    reused_stages = {} if reused_run else reusable_stages(records, keys)  # the whole run, or stages
    trained_by = reused_stages["train"]["run_dir"] if "train" in reused_stages else None
    return RunPlan(config=config, run=run, source=resolved.source, schema=schema, drift_baseline=drift_baseline,
                   baseline_model=baseline_model, module=module, span_selection=resolved.span_selection,
                   cache_keys=keys, reused_run=reused_run, reused_stages=reused_stages,
                   reused_serving_model=bool(trained_by) and model_is_serving(records, trained_by, baseline_model),
                   study_path=study_path, study_trials=tuple(study_trials), framework=framework)


def _check_windowing(fmt: RecordFormat, config: PipelineConfig) -> None:
    require_column(fmt, config.window_key, "window_key")
    require_column(fmt, config.window_time_key, "window_time_key")
    if fmt.type_of(config.window_time_key) != "int":
        raise ConfigError("window_time_key", f"{config.window_time_key!r} must be an int column (unix seconds); "
                                             f"type it with --column_types")
    if config.window_key in (config.window_time_key, config.label_key):
        raise ConfigError("window_key", "must differ from window_time_key and label_key")


def _check_preprocessing_inputs(module: Any, fmt: RecordFormat, config: PipelineConfig) -> None:
    """Traces preprocessing_fn on the input's columns so a missing column is named now, not mid-run."""
    import tensorflow as tf
    import tensorflow_transform as tft

    dtypes = {"int": tf.int64, "float": tf.float32, "string": tf.string}
    spec = {c: tf.SparseTensorSpec([None, None], dtypes[t]) for c, t in zip(fmt.columns, fmt.types)}
    try:
        tft.get_transform_input_columns(module.preprocessing_fn, spec)
    except KeyError as e:
        raise ConfigError("input", f"column {e.args[0]!r}, used by {config.module}.preprocessing_fn, is not in "
                                   f"the input header ({', '.join(fmt.columns)})") from e


def _load_schema(path: str) -> schema_pb2.Schema:
    import tensorflow_data_validation as tfdv
    try:
        return tfdv.load_schema_text(path)
    except Exception as e:
        raise ConfigError("schema", f"cannot read a schema from {path}: {e}") from e
