"""Evaluate with TFMA in the same graph: metrics, slices, value and change thresholds, and the blessing.

TensorFlow models are run by TFMA itself (their `serving_default` and `transformed_label` signatures). When the
candidate or the baseline is a scikit-learn or XGBoost model, evaluation is TFMA's model-agnostic one:
`AddPredictions` scores each eval batch with both models (`beam_ml.model.estimators.load_scorer`) and adds, for each,
its scores and the label as its own transform graph encodes it, as columns that TFMA reads as materialized
predictions and labels; metrics, slices, thresholds, the comparison with the baseline and the blessing are TFMA's, as
for TensorFlow models.

Data contract: `EvaluateModel` takes a dict `{"examples": PCollection[pa.RecordBatch] (raw eval split),
"model": singleton PCollection[str] (the trained model dir, which also orders evaluation after training)[, "guards":
singleton PCollection[list[str]] (further reasons not to bless, e.g. `beam_ml.train.labels.CheckLabels`)]}` and
returns a singleton `PCollection[dict]`: {"blessed", "metrics", "failures", "baseline_model"}. TFMA's results
(readable by `tfma.load_eval_result`) go to `<output_dir>/` and `BLESSED` or `NOT_BLESSED` beside them.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow_model_analysis as tfma
from google.protobuf import text_format
from tensorflow_model_analysis.api import model_eval_lib
from tensorflow_model_analysis.extractors import slice_key_extractor, unbatch_extractor
from tfx_bsl.coders import example_coder
from tfx_bsl.tfxio import tensor_adapter

from beam_ml.config.train import FAIRNESS_METRICS, FAIRNESS_THRESHOLD
from beam_ml.core import fileutil
from beam_ml.core.records import RecordFormat
from beam_ml.model.artifact import OUTPUT_KEY, SERVING_SIGNATURE, TRANSFORMED_LABEL_SIGNATURE
from beam_ml.model.estimators import load_scorer
from beam_ml.train import batched_metrics
from beam_ml.train.transform import tensor_adapter_config

CANDIDATE = "candidate"


# Rows per batch handed to TFMA. When TFMA's own evaluator is used it splits each batch into examples by scanning the
# whole batch once per row (`util._split_sparse_batch`), so its cost grows with the square of the batch size: ingest's
# batches (tens of thousands of rows) must be cut down to about what TFMA's own readers produce.
EVAL_BATCH_ROWS = 1000
BASELINE = "baseline"
# The columns `AddPredictions` adds: each model's transformed label and scores.
LABEL_COLUMNS = {CANDIDATE: "__beam_ml_candidate_label", BASELINE: "__beam_ml_baseline_label"}
PREDICTION_COLUMNS = {CANDIDATE: "__beam_ml_candidate_scores", BASELINE: "__beam_ml_baseline_scores"}
BLESSED = "BLESSED"
NOT_BLESSED = "NOT_BLESSED"


def build_eval_config(label: str, metrics: Sequence[str], slices: Sequence[Sequence[str]],
                      thresholds: dict, change_thresholds: dict, with_baseline: bool,
                      fairness_features: Sequence[str] = (), materialized: bool = False) -> tfma.EvalConfig:
    """A TFMA EvalConfig (for the labels and predictions that `AddPredictions` materialized, when `materialized`).
    Thresholds are keyed by metric class name (as in `metrics`); change thresholds apply only when there is a
    baseline (a first model is judged on value thresholds alone). Each of `fairness_features` is a slice, and the
    false positive and false negative rates at the 0.5 threshold (`FAIRNESS_METRICS`: what Fairness Indicators shows)
    are computed on every slice."""
    unknown = (set(thresholds) | set(change_thresholds)) - set(metrics)
    if unknown:
        raise ValueError(f"thresholds name metrics not in eval_metrics: {sorted(unknown)}")
    configs = []
    for class_name in metrics:
        threshold = tfma.MetricThreshold()
        bounds = thresholds.get(class_name, {})
        if "lower" in bounds:
            threshold.value_threshold.lower_bound.value = float(bounds["lower"])
        if "upper" in bounds:
            threshold.value_threshold.upper_bound.value = float(bounds["upper"])
        change = change_thresholds.get(class_name)
        if change and with_baseline:
            threshold.change_threshold.direction = (tfma.MetricDirection.HIGHER_IS_BETTER
                                                    if change["direction"] == "higher"
                                                    else tfma.MetricDirection.LOWER_IS_BETTER)
            if "absolute" in change:
                threshold.change_threshold.absolute.value = float(change["absolute"])
            if "relative" in change:
                threshold.change_threshold.relative.value = float(change["relative"])
        config = tfma.MetricConfig(class_name=class_name)
        if threshold.ByteSize():  # judged on the overall slice; the other slices are for reading
            config.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)
        configs.append(config)
    if fairness_features:
        configs += [tfma.MetricConfig(class_name=class_name, config=json.dumps({"thresholds": [FAIRNESS_THRESHOLD],
                                                                                "name": name}))
                    for name, class_name in FAIRNESS_METRICS.items()]
        slices = [*slices, *([column] for column in fairness_features if [column] not in list(slices))]

    def model_spec(name: str, is_baseline: bool) -> tfma.ModelSpec:
        if materialized:
            return tfma.ModelSpec(name=name, label_key=LABEL_COLUMNS[name], prediction_key=PREDICTION_COLUMNS[name],
                                  is_baseline=is_baseline)
        return tfma.ModelSpec(name=name, signature_name=SERVING_SIGNATURE, label_key=label,
                              prediction_key=OUTPUT_KEY, preprocessing_function_names=[TRANSFORMED_LABEL_SIGNATURE],
                              model_type=tfma.TF_GENERIC, is_baseline=is_baseline)

    specs = [model_spec(CANDIDATE, False)] + ([model_spec(BASELINE, True)] if with_baseline else [])
    return tfma.EvalConfig(model_specs=specs, metrics_specs=[tfma.MetricsSpec(metrics=configs)],
                           slicing_specs=[tfma.SlicingSpec(feature_keys=list(s)) for s in slices])


class AddRawRecords(beam.DoFn):
    """Adds the serialized tf.Example of each row as TFMA's raw input column (what the serving signature takes),
    in batches of at most `max_rows` rows (zero-copy slices)."""

    def __init__(self, max_rows: int = EVAL_BATCH_ROWS):
        self._max_rows = max_rows

    def setup(self):
        self._encoder = example_coder.RecordBatchToExamplesEncoder()

    def process(self, batch: pa.RecordBatch, *unused_after):
        for start in range(0, batch.num_rows, self._max_rows):
            part = batch.slice(start, self._max_rows)
            raw = pa.array([[r] for r in self._encoder.encode(part)], type=pa.large_list(pa.large_binary()))
            yield pa.RecordBatch.from_arrays(part.columns + [raw], part.schema.names + [tfma.ARROW_INPUT_COLUMN])


class AddPredictions(beam.DoFn):
    """Adds each model's transformed label (`LABEL_COLUMNS`: the label as its own transform graph encodes it, so
    that a baseline whose classes were indexed in another order is judged right) and scores (`PREDICTION_COLUMNS`),
    each a list<float32> per row, to batches that `AddRawRecords` gave their serialized examples."""

    def __init__(self, candidate_dir: str, baseline_dir: Optional[str]):
        self._dirs = {CANDIDATE: candidate_dir, **({BASELINE: baseline_dir} if baseline_dir else {})}

    def setup(self):
        self._scorers: dict = {}

    def _scorer(self, name: str):
        if name not in self._scorers:  # loaded when the first batch comes, after training
            self._scorers[name] = load_scorer(self._dirs[name])
        return self._scorers[name]

    def process(self, batch: pa.RecordBatch):
        examples = [row[0] for row in batch.column(batch.schema.get_field_index(tfma.ARROW_INPUT_COLUMN)).to_pylist()]
        columns = {}
        for name in self._dirs:
            columns[LABEL_COLUMNS[name]], columns[PREDICTION_COLUMNS[name]] = self._scorer(name).label_and_scores(
                examples)
        yield pa.RecordBatch.from_arrays(
            batch.columns + [_float_lists(values) for values in columns.values()], batch.schema.names + list(columns))


def _float_lists(values: np.ndarray) -> pa.Array:
    """Rows of a [rows, width] array as list<float32> values."""
    values = np.asarray(values, dtype=np.float32).reshape(len(values), -1)
    offsets = np.arange(len(values) + 1, dtype=np.int32) * values.shape[1]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.ravel()))


def overall_metrics(output_path: str) -> dict[str, float]:
    """The candidate's metrics on the overall slice: {metric name: value}."""
    metrics = {}
    for for_slice in tfma.load_metrics(output_path):
        if for_slice.slice_key.single_slice_keys:
            continue
        for item in for_slice.metric_keys_and_values:
            key = item.key
            if key.model_name in ("", CANDIDATE) and not key.is_diff and item.value.HasField("double_value"):
                metrics[key.name] = item.value.double_value.value
    return dict(sorted(metrics.items()))


def threshold_failures(output_path: str) -> list[str]:
    result = tfma.load_validation_result(output_path)
    failures = []
    for per_slice in result.metric_validations_per_slice:
        for failure in per_slice.failures:
            value = failure.metric_value.double_value.value
            bound = text_format.MessageToString(failure.metric_threshold, as_one_line=True)
            failures.append(f"{failure.metric_key.name}{' change vs baseline' if failure.metric_key.is_diff else ''}"
                            f" = {value:.6g} fails {{{bound}}} {failure.message}".strip())
    if result.missing_thresholds:  # TFMA blesses nothing without a bound to check
        failures.append("no thresholds to validate against: eval_thresholds is empty (and a first model has no "
                        "baseline for eval_change_thresholds)")
    if not result.validation_ok and not failures:
        failures = [str(result.validation_details) or "validation not ok"]
    return failures


class DecideBlessing(beam.DoFn):
    """Reads TFMA's validation result once it is written; writes BLESSED or NOT_BLESSED; emits the summary."""

    def __init__(self, output_path: str, baseline_model: Optional[str]):
        self._output_path = output_path
        self._baseline_model = baseline_model

    def process(self, _, guards: Optional[list[str]] = None, **written: Any):
        failures = threshold_failures(self._output_path) + list(guards or [])
        blessed = not failures
        fileutil.write_text(os.path.join(self._output_path, BLESSED if blessed else NOT_BLESSED), "")
        yield {"blessed": blessed, "metrics": overall_metrics(self._output_path), "failures": failures,
               "baseline_model": self._baseline_model}


def _after(element, *unused_prerequisites):
    return element


class EvaluateModel(beam.PTransform[dict[str, beam.PCollection], beam.PCollection[dict]]):
    """TFMA evaluation of the trained model on the eval split, against the pushed baseline when there is one.

    Example::

        summary = {"examples": eval_batches, "model": model_dir} | EvaluateModel(
            eval_config, candidate_dir, baseline_dir=None, output_path=run_dir + "/evaluation", fmt=fmt)

    Args:
      eval_config: from `build_eval_config`.
      candidate_dir: where training exports the model (it need not exist when the graph is built).
      baseline_dir: the currently pushed model, or None.
      output_path: TFMA output directory.
      fmt: the raw CSV format (for TFMA's tensor adapter).
      materialized: the candidate or the baseline is a scikit-learn or XGBoost model (see the module docstring):
        `eval_config` must have been built with `materialized=True`.
    """

    def __init__(self, eval_config: tfma.EvalConfig, candidate_dir: str, baseline_dir: Optional[str],
                 output_path: str, fmt: RecordFormat, materialized: bool = False):
        super().__init__()
        self._materialized = materialized
        self._eval_config = eval_config
        self._candidate_dir = candidate_dir
        self._baseline_dir = baseline_dir
        self._output_path = output_path
        self._fmt = fmt

    def expand(self, inputs: dict[str, beam.PCollection]) -> beam.PCollection[dict]:
        dirs = {CANDIDATE: self._candidate_dir, **({BASELINE: self._baseline_dir} if self._baseline_dir else {})}
        if self._materialized:
            models = [tfma.types.EvalSharedModel(model_path=path, model_name=name, is_baseline=name == BASELINE,
                                                 model_type=tfma.constants.MATERIALIZED_PREDICTION)
                      for name, path in dirs.items()]
        else:
            models = [tfma.default_eval_shared_model(eval_saved_model_path=path, eval_config=self._eval_config,
                                                     model_name=name) for name, path in dirs.items()]
        shared_model = models if len(models) > 1 else models[0]
        adapter = tensor_adapter_config(self._fmt)
        added = [pa.field(tfma.ARROW_INPUT_COLUMN, pa.large_list(pa.large_binary()))] + (
            [pa.field(column, pa.list_(pa.float32()))
             for m in dirs for column in (LABEL_COLUMNS[m], PREDICTION_COLUMNS[m])] if self._materialized else [])
        arrow_schema = adapter.arrow_schema
        for field in added:
            arrow_schema = arrow_schema.append(field)
        tfxio_config = tensor_adapter.TensorAdapterConfig(arrow_schema, adapter.tensor_representations)
        extractors, evaluators = evaluation_stages(self._eval_config, shared_model, tfxio_config)
        batches = (inputs["examples"]
                   | "AfterTraining" >> beam.Map(_after, beam.pvalue.AsList(inputs["model"]))
                   | "AddRawRecords" >> beam.ParDo(AddRawRecords()))
        if self._materialized:
            batches = batches | "AddPredictions" >> beam.ParDo(AddPredictions(self._candidate_dir, self._baseline_dir))
        written = batches | "Tfma" >> tfma.ExtractEvaluateAndWriteResults(
            eval_shared_model=shared_model, eval_config=self._eval_config, output_path=self._output_path,
            tensor_adapter_config=tfxio_config, extractors=extractors, evaluators=evaluators)
        outputs = _flatten_pcollections(written)
        guards = {"guards": beam.pvalue.AsSingleton(inputs["guards"])} if "guards" in inputs else {}
        return (inputs["examples"].pipeline
                | "Trigger" >> beam.Create([None])
                | "DecideBlessing" >> beam.ParDo(
                    DecideBlessing(self._output_path, self._baseline_dir), **guards,
                    **{f"w{i}": beam.pvalue.AsList(pc) for i, pc in enumerate(outputs)}))


def evaluation_stages(eval_config: tfma.EvalConfig, shared_model: Any, tfxio_config: tensor_adapter.TensorAdapterConfig,
                      batched: bool = True) -> tuple[list, Optional[list]]:
    """TFMA's extractors and evaluators for the config: batched metrics (`beam_ml.train.batched_metrics`) on TFMA's
    batched extracts when they compute everything the config asks for (and `batched`), else TFMA's own per-example
    evaluator."""
    config = model_eval_lib._update_eval_config_with_defaults(eval_config, shared_model)  # as TFMA does inside
    extractors = tfma.default_extractors(eval_shared_model=shared_model, eval_config=config,
                                         tensor_adapter_config=tfxio_config)
    if not batched or batched_metrics.unsupported_reason(config) is not None:
        return extractors, None
    per_example = (unbatch_extractor.UNBATCH_EXTRACTOR_STAGE_NAME, slice_key_extractor.SLICE_KEY_EXTRACTOR_STAGE_NAME)
    batched_extractors = [e for e in extractors if e.stage_name not in per_example]
    return batched_extractors, [batched_metrics.BatchedMetricsEvaluator(config, batched_extractors[-1].stage_name)]


def _flatten_pcollections(value: Any) -> list[beam.PCollection]:
    if isinstance(value, beam.PCollection):
        return [value]
    if isinstance(value, dict):
        return [pc for v in value.values() for pc in _flatten_pcollections(v)]
    return []
