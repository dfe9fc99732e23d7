"""The whole batch pipeline as one composite PTransform: ingest → validate → transform → train → evaluate → push.

`plan_run` resolves everything that must be known when the graph is built (input files and their fingerprints,
the CSV format, the user module, the baseline model, the run directory) and fails with a `ConfigError` naming the
option before any work. `TrainPipeline(plan)` then wires the stages; each stage is its own reusable PTransform.
"""
from __future__ import annotations

import dataclasses
import math
import os
import secrets
import time
import uuid
from typing import Any, Optional, Union

import apache_beam as beam
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from beam_ml import modules, spans
from beam_ml.config import ConfigError, PipelineConfig, parse_time
from beam_ml.deadletter import WriteDeadLetters
from beam_ml.evaluate import EvaluateModel, build_eval_config
from beam_ml.ingest import DEAD_LETTER, RECORDS_READ, SPLIT_BATCHES, ReadSplits
from beam_ml.inputs import resolve_source
from beam_ml.leakage import CheckLeakage
from beam_ml.manifest import RunManifest, package_versions, utc_now
from beam_ml.push import PushIfBlessed, latest_model
from beam_ml.records import RecordFormat
from beam_ml.sources import Source
from beam_ml.split import GivenSplit, HashSplit, TimeSplit
from beam_ml.train import FnArgs, TrainModel
from beam_ml.transform import TransformSplits
from beam_ml.windows import WindowRows, WindowSpec
from beam_ml.validate import SCHEMA_FILE, GenerateSplitStatistics, ValidateSplits, load_drift_baseline


class RunFailed(RuntimeError):
    """The run stopped on purpose (anomalies under the `fail` policy, an empty split); the manifest says why."""


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """A validated config plus everything resolved when the graph is built."""

    config: PipelineConfig
    run_id: str
    run_dir: str
    source: Source
    schema: Optional[schema_pb2.Schema]
    drift_baseline: Optional[statistics_pb2.DatasetFeatureStatisticsList]
    baseline_model: Optional[str]
    started: str
    module: modules.UserModule
    span_selection: Optional[spans.SpanSelection] = None
    launch_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def fmt(self) -> RecordFormat:
        return self.source.fmt

    @property
    def split(self) -> Union[HashSplit, TimeSplit, GivenSplit]:
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
        return f"{self.run_id}/{self.launch_id}"

    @property
    def serving_model_dir(self) -> str:
        return os.path.join(self.run_dir, "model", "serving")

    @property
    def temp_dir(self) -> str:
        return self.config.temp_dir or os.path.join(self.run_dir, "tmp")

    def manifest(self) -> RunManifest:
        return RunManifest(self.run_dir, {
            "run_id": self.run_id, "run_dir": self.run_dir, "started": self.started,
            "versions": package_versions(), "config": self.config.to_dict(),
            "inputs": self.source.describe(),
            "span_selection": dataclasses.asdict(self.span_selection) if self.span_selection else None,
            "record_format": {"columns": list(self.fmt.columns), "types": list(self.fmt.types)},
            "baseline_model": self.baseline_model,
            "evaluation_mode": ("value and change thresholds against the baseline model" if self.baseline_model
                                else "value thresholds only (first model: no baseline to compare with)")})


def plan_run(config: PipelineConfig) -> RunPlan:
    """Resolves and checks everything the graph needs; raises ConfigError naming the offending option."""
    config = dataclasses.replace(config, **{name: absolute(getattr(config, name))
                                            for name in ("output_dir", "serving_dir", "temp_dir")})

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
    try:
        user_module = modules.check(config.module)
    except ValueError as e:
        raise ConfigError("module", str(e)) from e
    _check_preprocessing_inputs(user_module.load(), fmt, config)
    module_length = getattr(user_module.load(), "WINDOW_LENGTH", None)
    if module_length is not None and module_length != config.window_length:
        raise ConfigError("window_length", f"{config.module} models windows of WINDOW_LENGTH={module_length} rows, "
                                           f"got {config.window_length}")
    unknown = sorted(set(config.column_types) - set(fmt.columns))
    if unknown:
        raise ConfigError("column_types", f"names columns not in the input header: {unknown}")
    try:
        build_eval_config(config.label_key, config.eval_metrics, config.eval_slices, config.eval_thresholds,
                          config.eval_change_thresholds, with_baseline=True)
    except ValueError as e:
        raise ConfigError("eval_thresholds", str(e)) from e
    schema = _load_schema(config.schema) if config.schema else None
    drift_baseline = None
    if config.drift_baseline:
        try:
            drift_baseline = load_drift_baseline(config.drift_baseline)
        except Exception as e:
            raise ConfigError("drift_baseline", f"cannot read statistics from {config.drift_baseline}: {e}") from e
    run_id, run_dir = new_run_dir(config.output_dir, config.run_id)
    return RunPlan(config=config, run_id=run_id, run_dir=run_dir, source=resolved.source, schema=schema,
                   drift_baseline=drift_baseline, baseline_model=latest_model(config.serving_dir),
                   started=utc_now(), module=user_module, span_selection=resolved.span_selection)


def new_run_dir(output_dir: str, run_id: Optional[str]) -> tuple[str, str]:
    """The run id (given, or UTC time plus a random suffix) and its directory, which must not exist yet."""
    import tensorflow as tf
    run_id = run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
    run_dir = os.path.join(output_dir, run_id)
    if tf.io.gfile.exists(run_dir):
        raise ConfigError("run_id", f"{run_dir} already exists; each run needs its own directory")
    return run_id, run_dir


def absolute(path: Optional[str]) -> Optional[str]:
    """Local paths made absolute: workers (other processes, machines) must not depend on the launcher's cwd."""
    return path if path is None or "://" in path else os.path.abspath(path)


def require_column(fmt: RecordFormat, column: str, option: str) -> None:
    if column not in fmt.columns:
        raise ConfigError(option, f"column {column!r} is not in the input header ({', '.join(fmt.columns)})")


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


# ---- small steps of the graph ------------------------------------------------------------------------------------
def key_value(value: Any, key: str) -> tuple[str, Any]:
    return key, value


def count_one(unused: Any, key: str) -> tuple[str, int]:
    return key, 1


def _rows(batch: Any, key: str) -> tuple[str, int]:
    return key, batch.num_rows


def counts_record(totals: dict[str, int], splits: tuple[str, ...], windows: bool = False) -> dict[str, Any]:
    """{read, dead_letter, splits: {name: n}[, windows: {name: n}]} from the per-key totals (absent keys count 0)."""
    record = {"read": totals.get("read", 0), "dead_letter": totals.get("dead_letter", 0),
              "splits": {name: totals.get(f"split:{name}", 0) for name in splits}}
    if windows:
        record["windows"] = {name: totals.get(f"windows:{name}", 0) for name in splits}
    return record


class CheckData(beam.DoFn):
    """The gate before training: stops the run (failed manifest, then an error) on an empty split or, under the
    `fail` policy, on anomalies; otherwise passes on."""

    def __init__(self, policy: str, manifest: RunManifest):
        self._policy = policy
        self._manifest = manifest

    def process(self, _, counts: dict, anomalies: list):
        empty = [name for name, n in counts["splits"].items() if n == 0]
        if empty:
            error = (f"split(s) {', '.join(empty)} received no rows (read {counts['read']}, dead-lettered "
                     f"{counts['dead_letter']}); check --input and --split_buckets")
            self._manifest.write("failed", counts=counts, anomalies=anomalies, error=error)
            raise RunFailed(error)
        windowless = [name for name, n in counts.get("windows", {}).items() if n == 0]
        if windowless:
            error = (f"split(s) {', '.join(windowless)} have rows but no complete window; check --window_length "
                     f"and --window_max_gap against the rows each key has")
            self._manifest.write("failed", counts=counts, anomalies=anomalies, error=error)
            raise RunFailed(error)
        if anomalies and self._policy == "fail":
            listing = "; ".join(f"[{a['split']}] {a['feature'] or '(dataset)'}: {a['type']}: {a['description']}"
                                for a in anomalies)
            error = f"data validation found {len(anomalies)} anomalies (policy 'fail'): {listing}"
            self._manifest.write("failed", counts=counts, anomalies=anomalies, error=error)
            raise RunFailed(error)
        yield "ok"


class WriteRunManifest(beam.DoFn):
    def __init__(self, manifest: RunManifest):
        self._manifest = manifest

    def process(self, _, counts: dict, anomalies: list, evaluation: dict, pushed: list, leakage: list):
        yield self._manifest.write(
            "succeeded", counts=counts, anomalies=anomalies, metrics=evaluation["metrics"],
            blessed=evaluation["blessed"], threshold_failures=evaluation["failures"],
            pushed_model_dir=pushed[0] if pushed else None, leakage=leakage[0] if leakage else None)


class TrainPipeline(beam.PTransform):
    """The whole run as one composite PTransform; returns its main outputs for tests to assert on.

    Example::

        plan = plan_run(PipelineConfig.load("examples/penguins/config.yaml", {}))
        with beam.Pipeline() as p:
            outputs = p | TrainPipeline(plan)

    Outputs (dict): the per-split RecordBatches, `dead_letter`, `counts` and `anomalies` (singletons),
    `model_dir`, `evaluation` ({blessed, metrics, failures, baseline_model}), `pushed` (path or None) and
    `manifest` (the record written to run_manifest.json).
    """

    def __init__(self, plan: RunPlan):
        super().__init__()
        self._plan = plan

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        plan, config = self._plan, self._plan.config
        run_dir, splits = plan.run_dir, plan.split.names
        manifest = plan.manifest()

        ingested = pbegin | "Ingest" >> ReadSplits(plan.source, plan.split)
        batches = {name: ingested[name] for name in splits}
        spec = plan.window_spec
        # What the model learns from and is judged on: the rows, or windows of each key's rows.
        examples = batches if spec is None else {
            name: batches[name] | f"Windows{name.title()}" >> WindowRows(spec, plan.fmt) for name in splits}
        _ = ingested[DEAD_LETTER] | "WriteDeadLetters" >> WriteDeadLetters(
            os.path.join(run_dir, "dead_letter", "dead_letter"))
        counts = (
            [ingested[RECORDS_READ] | "KeyRead" >> beam.Map(key_value, "read"),
             ingested[DEAD_LETTER] | "KeyDeadLetters" >> beam.Map(count_one, "dead_letter")]
            + [batches[name] | f"KeyRows{name.title()}" >> beam.Map(_rows, f"split:{name}") for name in splits]
            + ([] if spec is None else [examples[name] | f"KeyWindows{name.title()}" >> beam.Map(
                _rows, f"windows:{name}") for name in splits])
            | "AllCounts" >> beam.Flatten()
            | "SumCounts" >> beam.CombinePerKey(sum)
            | "CountsToDict" >> beam.combiners.ToDict()
            | "CountsRecord" >> beam.Map(counts_record, splits, spec is not None))

        leakage = (ingested[SPLIT_BATCHES] | "Leakage" >> CheckLeakage(config.leakage_key) if config.leakage_key
                   else pbegin | "NoLeakageCheck" >> beam.Create([]))
        stats = ingested[SPLIT_BATCHES] | "Statistics" >> GenerateSplitStatistics(
            os.path.join(run_dir, "statistics"), splits)
        validation = stats | "Validate" >> ValidateSplits(run_dir, plan.schema, plan.drift_baseline,
                                                          config.drift_threshold)
        checked = (pbegin | "CheckTrigger" >> beam.Create([None])
                   | "CheckData" >> beam.ParDo(CheckData(config.anomaly_policy, manifest),
                                               counts=beam.pvalue.AsSingleton(counts),
                                               anomalies=beam.pvalue.AsSingleton(validation["anomalies"])))

        transformed = examples | "Transform" >> TransformSplits(
            plan.module.load().preprocessing_fn, plan.fmt, os.path.join(run_dir, "transform"),
            plan.temp_dir)

        fn_args = FnArgs(train_files=(), eval_files=(), transform_output=os.path.join(run_dir, "transform"),
                         schema_path=os.path.join(run_dir, "schema", SCHEMA_FILE),
                         serving_model_dir=plan.serving_model_dir,
                         model_run_dir=os.path.join(run_dir, "model", "logs"), label=config.label_key,
                         hyperparameters=config.hyperparameters, seed=config.seed,
                         windowing=None if spec is None else {**spec.to_dict(), "label": config.label_key})
        model_dir = pbegin | "Train" >> TrainModel(
            plan.module, fn_args, transformed["train"], transformed["eval"],
            after={"transform_fn": transformed["transform_fn"], "checked": checked,
                   "schema": validation["schema"]}, min_ram=config.train_min_ram)

        eval_config = build_eval_config(config.label_key, config.eval_metrics, config.eval_slices,
                                        config.eval_thresholds, config.eval_change_thresholds,
                                        with_baseline=plan.baseline_model is not None)
        evaluation = {"examples": examples["eval"], "model": model_dir} | "Evaluate" >> EvaluateModel(
            eval_config, plan.serving_model_dir, plan.baseline_model, os.path.join(run_dir, "evaluation"), plan.fmt)

        pushed = model_dir | "Push" >> beam.ParDo(PushIfBlessed(config.serving_dir, plan.push_id),
                                                  beam.pvalue.AsSingleton(evaluation))
        written = (pbegin | "ManifestTrigger" >> beam.Create([None])
                   | "WriteManifest" >> beam.ParDo(
                       WriteRunManifest(manifest), counts=beam.pvalue.AsSingleton(counts),
                       anomalies=beam.pvalue.AsSingleton(validation["anomalies"]),
                       evaluation=beam.pvalue.AsSingleton(evaluation), pushed=beam.pvalue.AsList(pushed),
                       leakage=beam.pvalue.AsList(leakage)))
        return {**batches, "dead_letter": ingested[DEAD_LETTER], "counts": counts,
                "anomalies": validation["anomalies"], "model_dir": model_dir, "evaluation": evaluation,
                "pushed": pushed, "manifest": written}
