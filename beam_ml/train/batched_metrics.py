"""TFMA's metrics computed a batch at a time: the same computations, results and files, without TFMA's per-example path.

TFMA 0.47 splits every batch into one extract per example, fans each out to its slices and feeds TFMA's combiners
one example at a time (about 1.5 ms per example with three slices: most of an evaluation's time). Here the batched
extracts of TFMA's own extractors (features, labels, predictions of every model) are cut by slice with numpy, each
supported TFMA combiner's accumulator is built from the slice's arrays in one step (`_BatchAccumulator.add`), and
from there TFMA's own code takes over: the combiners' `extract_output`, derived metrics (AUC from the calibration
histogram, ...), baseline diffs, threshold validation and TFMA's writers. Results load with `tfma.load_eval_result`.

`unsupported_reason` says when an EvalConfig needs TFMA's own evaluator (confidence intervals, cross-slices,
example weights, sub keys, metrics without a batched twin here, ...); `EvaluateModel` then uses it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Optional

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.api import types
from tensorflow_model_analysis.contrib.aggregates import binary_confusion_matrices as bcm
from tensorflow_model_analysis.evaluators import metrics_plots_and_validations_evaluator as tfma_evaluator
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.metrics import (
    binary_confusion_matrices,
    calibration,
    calibration_histogram,
    example_count,
    metric_specs,
    metric_types,
    metric_util,
    tf_metric_wrapper,
)
from tensorflow_model_analysis.metrics import multi_class_confusion_matrix_metrics as mcm

SliceKey = tuple


class _BatchAccumulator:
    """One TFMA combiner, fed whole slices of a batch: `add` builds a compact partial accumulator from the slice's
    (label, prediction, weight) arrays, `merge` folds partials, `output` is the TFMA combiner's own output.
    `flattened`: whether `add` takes one entry per (example, class), as TFMA's flatten=True yields them, or one
    row per example ([rows, label width], [rows, classes], [rows])."""

    flattened = True

    def __init__(self, combiner: beam.CombineFn, model_name: str):
        self.combiner = combiner
        self.model_name = model_name

    def create(self) -> Any:
        raise NotImplementedError

    def add(self, labels: np.ndarray, predictions: np.ndarray, weights: np.ndarray) -> Any:
        raise NotImplementedError

    def merge(self, accumulator: Any, partial: Any) -> Any:
        """Folds a partial from `add` into an accumulator; by default partials and accumulators simply add up."""
        return self.combine(accumulator, partial)

    def combine(self, left: Any, right: Any) -> Any:
        """Two accumulators (from `create`/`merge`) as one."""
        return left + right

    def to_tfma(self, accumulator: Any) -> Any:
        raise NotImplementedError

    def output(self, accumulator: Any) -> dict:
        return self.combiner.extract_output(self.to_tfma(accumulator))


class _ExampleCount(_BatchAccumulator):
    flattened = False

    def create(self) -> float:
        return 0.0

    def add(self, labels, predictions, weights) -> float:
        return float(np.sum(weights))

    def to_tfma(self, accumulator):
        return accumulator


class _WeightedSums(_BatchAccumulator):
    """Partial: [weighted labels, weighted predictions, weighted examples] (MeanLabel, MeanPrediction, Calibration)."""

    def create(self) -> np.ndarray:
        return np.zeros(3)

    def add(self, labels, predictions, weights):
        return np.array([labels @ weights, predictions @ weights, weights.sum()])

    def to_tfma(self, accumulator):
        sums = calibration._WeightedLabelsPredictionsExamples()
        (sums.total_weighted_labels, sums.total_weighted_predictions,
         sums.total_weighted_examples) = map(float, accumulator)
        return sums


class _KerasMetrics(_BatchAccumulator):
    """Keras metrics as TFMA runs them (`_CompilableMetricsCombiner`): `update_state` on a batch, the metric
    variables summed across batches. Accumulator: one list of weight arrays (or None) per metric."""

    flattened = False

    def _metrics(self) -> list:
        self.combiner.setup()  # builds the Keras metric objects once
        return self.combiner._metrics[self.combiner._output_names[0]]

    def create(self) -> list:
        return [None] * len(self._metrics())

    def add(self, labels, predictions, weights):
        partial = []
        for metric in self._metrics():
            metric.reset_states()
            metric.update_state(labels, predictions, weights.astype(np.float32))
            partial.append(metric.get_weights())
        return partial

    def combine(self, left, right):
        return [b if a is None else a if b is None else [x + y for x, y in zip(a, b)] for a, b in zip(left, right)]

    def to_tfma(self, accumulator):
        self._metrics()
        tfma_accumulator = self.combiner.create_accumulator()
        for index, weights in enumerate(accumulator):
            if weights is not None:
                tfma_accumulator.add_weights(0, index, weights)
        return tfma_accumulator


def _fractional_tuples(labels: np.ndarray, predictions: np.ndarray, weights: np.ndarray):
    """TFMA's `fractional_labels`: each (l, p, w) becomes (0, p, w(1-l)) and (1, p, w l); zero weights dropped."""
    if np.any((labels < 0.0) | (labels > 1.0)):
        raise ValueError(f"fractional labels must be within [0, 1]; found {labels[(labels < 0) | (labels > 1)][:5]}")
    both_labels = np.concatenate([np.zeros_like(labels), np.ones_like(labels)])
    both_weights = np.concatenate([weights * (1.0 - labels), weights * labels])
    keep = both_weights != 0.0
    return both_labels[keep], np.concatenate([predictions, predictions])[keep], both_weights[keep]


class _CalibrationHistogram(_BatchAccumulator):
    """Partial: (bucket ids, weighted labels, weighted predictions, weighted examples) of the non-empty buckets."""

    def __init__(self, combiner, model_name):
        super().__init__(combiner, model_name)
        c = combiner
        self._buckets, self._left, self._range = c._num_buckets, c._left, c._range
        self._fractional, self._by_prediction = c._fractional_labels, c._prediction_based_bucketing

    def create(self) -> Optional[np.ndarray]:
        return None  # (num_buckets + 2, 4): labels, predictions, examples, tuples; made on the first merge

    def add(self, labels, predictions, weights):
        if self._fractional:
            labels, predictions, weights = _fractional_tuples(labels, predictions, weights)
        values = predictions if self._by_prediction else labels
        if np.isnan(values).any():
            raise ValueError(f"NaN {'predictions' if self._by_prediction else 'labels'} cannot be bucketed "
                             f"for {self.combiner._key.name}")
        # TFMA's _bucket_index: truncation of (v - left) / range * n + 1, clipped to [0, n + 1]
        position = (values - self._left) / self._range * self._buckets + 1
        ids = np.clip(np.floor(np.clip(position, -1.0, self._buckets + 2.0)), 0, self._buckets + 1).astype(np.int64)
        present, inverse = np.unique(ids, return_inverse=True)
        sums = np.stack([np.bincount(inverse, labels * weights, len(present)),
                         np.bincount(inverse, predictions * weights, len(present)),
                         np.bincount(inverse, weights, len(present)),
                         np.bincount(inverse, None, len(present)).astype(np.float64)], axis=1)
        return present, sums

    def merge(self, accumulator, partial):
        if accumulator is None:
            accumulator = np.zeros((self._buckets + 2, 4))
        ids, sums = partial
        accumulator[ids] += sums
        return accumulator

    def combine(self, left, right):
        return right if left is None else left if right is None else left + right

    def to_tfma(self, accumulator):
        if accumulator is None:
            return {}
        return {int(i): calibration_histogram.Bucket(int(i), *map(float, accumulator[i, :3]))
                for i in np.flatnonzero(accumulator[:, 3])}


class _BinaryConfusionMatrix(_BatchAccumulator):
    """Partial: [thresholds, 4] array of (tp, tn, fp, fn)."""

    def __init__(self, combiner, model_name):
        super().__init__(combiner, model_name)
        self._thresholds = list(combiner._binary_confusion_matrices._thresholds)
        self._fractional = combiner._enable_fractional_labels

    def create(self) -> np.ndarray:
        return np.zeros((len(self._thresholds), 4))

    def add(self, labels, predictions, weights):
        if self._fractional:
            labels, predictions, weights = _fractional_tuples(labels, predictions, weights)
        out = np.empty((len(self._thresholds), 4))
        for i, threshold in enumerate(self._thresholds):
            positive = labels == 1.0 if self._fractional else labels > threshold
            above = predictions > threshold
            out[i] = [weights[positive & above].sum(), weights[~positive & ~above].sum(),
                      weights[~positive & above].sum(), weights[positive & ~above].sum()]
        return out

    def to_tfma(self, accumulator):
        return {t: bcm._ThresholdEntry(bcm.Matrix(*map(float, row)), [], [], [], [])
                for t, row in zip(self._thresholds, accumulator)}


class _MultiClassConfusionMatrix(_BatchAccumulator):
    """Partial: {threshold: {(actual class, predicted class): weight}}, as TFMA's
    `_MultiClassConfusionMatrixCombiner` counts it (the predicted class is the top prediction, or none, -1, when
    that is not above the threshold; a label is a class id or one-hot). One difference: a model with a single
    output (trained on one class) predicts class 0 here, where TFMA's combiner raises, so that the label guard
    refuses such a model instead of the evaluation failing the run."""

    flattened = False

    def __init__(self, combiner, model_name):
        super().__init__(combiner, model_name)
        self._thresholds = list(combiner._thresholds)

    def create(self) -> dict:
        return {}

    def add(self, labels, predictions, weights):
        actual = labels.argmax(axis=1) if labels.shape[1] > 1 else labels[:, 0].astype(np.int64)
        predicted = predictions.argmax(axis=1)
        top = predictions[np.arange(len(predictions)), predicted]
        partial = {}
        for threshold in self._thresholds:
            chosen = np.where(top <= threshold, mcm.NO_PREDICTED_CLASS_ID, predicted)
            pairs, inverse = np.unique(np.stack([actual, chosen], axis=1), axis=0, return_inverse=True)
            sums = np.bincount(inverse.ravel(), weights=weights, minlength=len(pairs))
            partial[threshold] = {(int(a), int(c)): float(w) for (a, c), w in zip(pairs, sums)}
        return partial

    def combine(self, left, right):
        merged = {t: dict(entries) for t, entries in left.items()}
        for threshold, entries in right.items():
            target = merged.setdefault(threshold, {})
            for pair, weight in entries.items():
                target[pair] = target.get(pair, 0.0) + weight
        return merged

    def to_tfma(self, accumulator):
        matrices = mcm.Matrices()
        for threshold, entries in accumulator.items():
            matrices[threshold] = {mcm.MatrixEntryKey(a, c): w for (a, c), w in entries.items()}
        return matrices


def _accumulator_for(computation: metric_types.MetricComputation) -> tuple[Optional[_BatchAccumulator], str]:
    """The batched twin of a TFMA computation, or None and why not."""
    combiner = computation.combiner
    preprocessors = [p for p in computation.preprocessors or []
                     if not isinstance(p, metric_types.StandardMetricInputsPreprocessor)]
    if preprocessors:
        return None, f"preprocessor {type(preprocessors[0]).__name__}"
    if isinstance(combiner, example_count._ExampleCountCombiner):
        if combiner._example_weighted or combiner._output_name:
            return None, "weighted or multi-output ExampleCount"
        return _ExampleCount(combiner, combiner._model_name), ""
    if isinstance(combiner, calibration_histogram._CalibrationHistogramCombiner):
        key = combiner._key
        if (key.sub_key or key.output_name or key.example_weighted or combiner._aggregation_type
                or combiner._class_weights):
            return None, f"{key.name} with a sub key, output, weights or aggregation"
        return _CalibrationHistogram(combiner, key.model_name), ""
    if isinstance(combiner, calibration._WeightedLabelsPredictionsExamplesCombiner):
        key = combiner._key
        if key.sub_key or key.output_name or key.example_weighted or combiner._aggregation_type or combiner._class_weights:
            return None, f"{key.name} with a sub key, output, weights or aggregation"
        return _WeightedSums(combiner, key.model_name), ""
    if isinstance(combiner, binary_confusion_matrices._BinaryConfusionMatrixCombiner):
        key = combiner._key
        if (key.sub_key or key.output_name or key.example_weighted or combiner._aggregation_type
                or combiner._class_weights or combiner._example_id_key
                or combiner._extract_label_prediction_and_weight
                is not metric_util.to_label_prediction_example_weight):
            return None, f"{key.name} with a sub key, output, weights, aggregation or example ids"
        return _BinaryConfusionMatrix(combiner, key.model_name), ""
    if isinstance(combiner, mcm._MultiClassConfusionMatrixCombiner):
        key = combiner._key
        if (key.sub_key or key.output_name or combiner._example_weighted
                or combiner._extract_label_prediction_and_weight is not metric_util.to_label_prediction_example_weight):
            return None, f"{key.name} with a sub key, output, weights or its own label extraction"
        return _MultiClassConfusionMatrix(combiner, key.model_name), ""
    if isinstance(combiner, tf_metric_wrapper._CompilableMetricsCombiner):
        model_spec = next((s for s in combiner._eval_config.model_specs if s.name == combiner._model_name), None)
        if (combiner._sub_key or combiner._aggregation_type or combiner._class_weights or combiner._example_weighted
                or combiner._output_names != [""] or (model_spec and model_spec.HasField("padding_options"))):
            return None, "Keras metrics with a sub key, aggregation, weights, padding or several outputs"
        return _KerasMetrics(combiner, combiner._model_name), ""
    return None, f"metric computed by {type(combiner).__name__}"


def computations_for(eval_config: tfma.EvalConfig) -> Any:
    """TFMA's computations for the config (non-derived, derived, cross-slice, CI-derived), de-duplicated by TFMA."""
    return tfma_evaluator._filter_and_separate_computations(
        metric_specs.to_computations(eval_config.metrics_specs, eval_config=eval_config))


def unsupported_reason(eval_config: tfma.EvalConfig) -> Optional[str]:
    """None if `BatchedMetricsEvaluator` computes exactly what TFMA's own evaluator would for this config (which must
    have TFMA's defaults filled in); otherwise the first reason it does not."""
    options = eval_config.options
    if options.compute_confidence_intervals.value:
        return "confidence intervals"
    if options.min_slice_size.value > 1:
        return "min_slice_size"
    if eval_config.cross_slicing_specs:
        return "cross slicing specs"
    for spec in eval_config.slicing_specs:
        if spec.feature_values or spec.slice_keys_sql:
            return "slicing on feature values or SQL"
    for spec in eval_config.model_specs:
        if spec.example_weight_key or spec.example_weight_keys or spec.model_type == tfma.TF_KERAS:
            return f"example weights or a TF_KERAS model ({spec.name})"
    for spec in eval_config.metrics_specs:
        if spec.query_key or spec.output_names or spec.binarize.ByteSize() or spec.aggregate.ByteSize():
            return "query keys, outputs, binarization or aggregation in a metrics spec"
    computations = computations_for(eval_config)
    if not computations.non_derived_computations:
        return "no metrics"
    if computations.cross_slice_computations:
        return "cross-slice metrics"
    for computation in computations.non_derived_computations:
        accumulator, reason = _accumulator_for(computation)
        if accumulator is None:
            return reason
    return None


def _row_values(value: Any, rows: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(row index, value) of every value of a batched feature, in row order, or None if it is not there."""
    if value is None:
        return None
    if isinstance(value, (types.VarLenTensorValue, types.SparseTensorValue)):
        return np.asarray(value.indices)[:, 0], np.asarray(value.values)
    array = np.asarray(value)
    per_row = array.reshape(rows, -1)
    return np.repeat(np.arange(rows), per_row.shape[1]), per_row.ravel()


def _slice_value(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"Found non-UTF8 feature value {value!r}") from e
    return value.item() if isinstance(value, np.generic) else value


def slice_rows(features: dict, transformed: list[dict], slicing_specs: Iterable[tfma.SlicingSpec],
               rows: int) -> dict[SliceKey, np.ndarray]:
    """{TFMA slice key: sorted row indices} of one batch. As TFMA's SliceKeyExtractor: a column is looked up in the
    transformed features first, then the raw ones; a row without the column is in none of its slices; a row with
    several values is in one slice per combination; keys are ((column, value), ...) sorted by column."""
    members: dict[SliceKey, list[np.ndarray]] = {}
    for spec in slicing_specs:
        columns = sorted(spec.feature_keys)
        if not columns:
            members.setdefault((), []).append(np.arange(rows))
            continue
        # Pairs of (row, combination code) grown one column at a time: each row crossed with its values.
        pair_rows, codes, uniques = np.arange(rows), np.zeros((rows, 0), np.int64), []
        for column in columns:
            found = next((v for v in ([d.get(column) for d in transformed] + [features.get(column)])
                          if v is not None), None)
            row_values = _row_values(found, rows)
            if row_values is None:
                pair_rows = pair_rows[:0]
                break
            value_rows, values = row_values
            distinct, value_codes = np.unique(values, return_inverse=True)
            uniques.append(distinct)
            starts = np.searchsorted(value_rows, pair_rows, side="left")
            counts = np.searchsorted(value_rows, pair_rows, side="right") - starts
            repeat = np.repeat(np.arange(len(pair_rows)), counts)
            offsets = np.arange(len(repeat)) - np.repeat(np.cumsum(counts) - counts, counts)
            pair_rows = pair_rows[repeat]
            codes = np.column_stack([codes[repeat], value_codes[starts[repeat] + offsets]])
        if not len(pair_rows):
            continue
        combos, inverse = np.unique(codes, axis=0, return_inverse=True)
        order = np.argsort(inverse.ravel(), kind="stable")
        bounds = np.searchsorted(inverse.ravel()[order], np.arange(len(combos) + 1))
        for i, combo in enumerate(combos):
            key = tuple((column, _slice_value(uniques[j][code])) for j, (column, code) in enumerate(zip(columns, combo)))
            members.setdefault(key, []).append(pair_rows[order[bounds[i]:bounds[i + 1]]])
    return {key: np.unique(np.concatenate(parts)) for key, parts in members.items()}


def _model_value(value: Any, eval_config: tfma.EvalConfig, model_name: str, key: str) -> Any:
    if isinstance(value, dict) and len(eval_config.model_specs) > 1:
        value = value[model_name]
    if isinstance(value, dict) and key:
        value = value[key]
    return value


@dataclasses.dataclass(frozen=True)
class ModelArrays:
    """One model's labels and predictions over a batch: per example ([rows, label width], [rows, classes]) and
    flattened as TFMA's `to_label_prediction_example_weight(flatten=True)` flattens an example (a class-id label
    one-hot encoded against the predictions' classes), `classes` entries per example."""
    labels: np.ndarray
    predictions: np.ndarray
    flat_labels: np.ndarray
    flat_predictions: np.ndarray

    @property
    def classes(self) -> int:
        return self.predictions.shape[1]


def model_arrays(extract: dict, eval_config: tfma.EvalConfig, model_name: str) -> ModelArrays:
    spec = next(s for s in eval_config.model_specs if s.name == model_name or len(eval_config.model_specs) == 1)
    labels = _model_value(extract[constants.LABELS_KEY], eval_config, model_name, spec.label_key)
    predictions = _model_value(extract[constants.PREDICTIONS_KEY], eval_config, model_name, spec.prediction_key)
    rows = len(predictions)
    predictions = np.asarray(predictions).reshape(rows, -1)
    labels = np.asarray(labels).reshape(rows, -1)
    width = predictions.shape[1]
    flat_labels = labels.astype(np.float64)
    if labels.shape[1] != width:
        if labels.shape[1] != 1:
            raise ValueError(f"model {model_name!r}: labels of width {labels.shape[1]} for predictions of width {width}")
        classes = flat_labels[:, 0]
        if np.any((classes < 0) | (classes >= width) | (classes != np.floor(classes))):
            raise ValueError(f"model {model_name!r}: class-id labels must be integers in [0, {width})")
        flat_labels = (np.arange(width)[None, :] == classes[:, None]).astype(np.float64)
    return ModelArrays(labels, predictions, flat_labels.ravel(), predictions.astype(np.float64).ravel())


class AccumulatePerSlice(beam.DoFn):
    """A batched extract → (slice key, partial accumulators) for every slice present in the batch."""

    def __init__(self, eval_config: tfma.EvalConfig):
        self._eval_config = eval_config

    def setup(self):
        self._accumulators = _accumulators(self._eval_config)
        self._models = sorted({a.model_name for a in self._accumulators})

    def process(self, extract: dict):
        arrays = {m: model_arrays(extract, self._eval_config, m) for m in self._models}
        rows = len(arrays[self._models[0]].predictions)
        transformed = extract.get(constants.TRANSFORMED_FEATURES_KEY) or {}
        if len(self._eval_config.model_specs) > 1:
            transformed = [transformed[s.name] for s in self._eval_config.model_specs if s.name in transformed]
        else:
            transformed = [transformed] if transformed else []
        slices = slice_rows(extract.get(constants.FEATURES_KEY) or {}, transformed,
                            self._eval_config.slicing_specs or [tfma.SlicingSpec()], rows)
        for key, members in slices.items():
            partials = []
            for accumulator in self._accumulators:
                model = arrays[accumulator.model_name]
                if accumulator.flattened:
                    entries = (members[:, None] * model.classes + np.arange(model.classes)).ravel()
                    partials.append(accumulator.add(model.flat_labels[entries], model.flat_predictions[entries],
                                                    np.ones(len(entries))))
                else:
                    partials.append(accumulator.add(model.labels[members], model.predictions[members],
                                                    np.ones(len(members))))
            yield key, tuple(partials)


class MergeSliceAccumulators(beam.CombineFn):
    """Folds the partial accumulators of one slice; outputs TFMA's {MetricKey/PlotKey: value} for it."""

    def __init__(self, eval_config: tfma.EvalConfig):
        self._eval_config = eval_config
        self._accumulators = None

    def setup(self):
        self._accumulators = _accumulators(self._eval_config)

    def _parts(self):
        if self._accumulators is None:
            self.setup()
        return self._accumulators

    def create_accumulator(self):
        return tuple(a.create() for a in self._parts())

    def add_input(self, accumulator, partials):
        return tuple(a.merge(acc, p) for a, acc, p in zip(self._parts(), accumulator, partials))

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        result = list(next(accumulators))
        for other in accumulators:
            result = [a.combine(left, right) for a, left, right in zip(self._parts(), result, other)]
        return tuple(result)

    def extract_output(self, accumulator) -> dict:
        metrics = {}
        for a, acc in zip(self._parts(), accumulator):
            metrics.update(a.output(acc))
        return metrics


def _accumulators(eval_config: tfma.EvalConfig) -> list[_BatchAccumulator]:
    accumulators = []
    for computation in computations_for(eval_config).non_derived_computations:
        accumulator, reason = _accumulator_for(computation)
        if accumulator is None:
            raise ValueError(f"batched metrics cannot compute {reason}")
        accumulators.append(accumulator)
    return accumulators


@beam.ptransform_fn
def _EvaluateBatched(extracts: beam.PCollection, eval_config: tfma.EvalConfig) -> dict:  # pylint: disable=invalid-name
    computations = computations_for(eval_config)
    baseline = next((s.name for s in eval_config.model_specs if s.is_baseline), None)
    metrics_and_plots = (
        extracts
        | "AccumulatePerSlice" >> beam.ParDo(AccumulatePerSlice(eval_config))
        | "MergePerSlice" >> beam.CombinePerKey(MergeSliceAccumulators(eval_config))
        | "AddDerivedAndDiffMetrics" >> tfma_evaluator._AddDerivedCrossSliceAndDiffMetrics(
            computations.derived_computations, computations.cross_slice_computations, [], baseline)
        | "AddCIDerivedMetrics" >> beam.Map(tfma_evaluator._add_ci_derived_metrics,
                                            computations.ci_derived_computations)
        | "RemovePrivateMetrics" >> beam.MapTuple(tfma_evaluator._remove_private_metrics))
    metrics = metrics_and_plots | "Metrics" >> beam.Map(tfma_evaluator._filter_by_key_type, metric_types.MetricKey)
    return {
        constants.METRICS_KEY: metrics,
        constants.PLOTS_KEY: metrics_and_plots | "Plots" >> beam.Map(tfma_evaluator._filter_by_key_type,
                                                                      metric_types.PlotKey),
        constants.ATTRIBUTIONS_KEY: metrics_and_plots | "Attributions" >> beam.Map(
            tfma_evaluator._filter_by_key_type, metric_types.AttributionsKey),
        constants.VALIDATIONS_KEY: metrics | "Validate" >> beam.Map(metrics_validator.validate_metrics, eval_config),
    }


def BatchedMetricsEvaluator(eval_config: tfma.EvalConfig,  # pylint: disable=invalid-name
                            run_after: str = "ExtractPredictions") -> tfma.evaluators.Evaluator:
    """A TFMA Evaluator over batched extracts (TFMA's extractors without unbatching and slice keys), run after the
    extractor `run_after` (the last of them).

    Example::

        # see beam_ml.train.evaluate.evaluation_stages
        config = model_eval_lib._update_eval_config_with_defaults(eval_config, models)
        if unsupported_reason(config) is None:
            tfma.ExtractEvaluateAndWriteResults(..., extractors=<TFMA's minus Unbatch and SliceKeys>,
                                                evaluators=[BatchedMetricsEvaluator(config, extractors[-1].stage_name)])
    """
    return tfma.evaluators.Evaluator(stage_name="EvaluateMetricsPlotsAndValidations", run_after=run_after,
                                     ptransform=_EvaluateBatched(eval_config))  # pylint: disable=no-value-for-parameter
