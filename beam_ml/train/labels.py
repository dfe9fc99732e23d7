"""The label guard: a model whose label lost or gained classes, or whose label is constant, is not blessed by
accident.

Accuracy on a run's own eval split cannot see this: a run whose data holds one species of three scores 1.0 and
would replace a three-species model. So the run records, with the model it exports (`model.artifact.LABELS_RECORD`):
the label's distinct values in each split, the class names in the order of the model's outputs (when the
transformed label is a class index, found by passing one real row of each value through the model's
`transformed_label` signature), and the shape of its outputs. Before blessing, that record is compared with the
baseline model's:

- the label has a single value in the whole run: never blessed (a model of it predicts nothing), unless the module
  says `UNSUPERVISED = True` and the value is 0: an anomaly model learns what normal is from the rows labelled 0, and
  a history without anomalies is what it learns from best;
- a split lacks label values the baseline's same split had, the run has values the baseline never saw, or the
  outputs' shape differs from the baseline's: not blessed unless the config says the label set changed on purpose
  (`label_set_changed: true`).

Labels with too many distinct values to be classes (float labels, or more than `MAX_CLASSES` values) are checked for
being constant only. Batch prediction reads `classes` to name the predicted class.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Optional

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from beam_ml.core import fileutil
from beam_ml.model.artifact import (
    LABELS_RECORD, OUTPUT_KEY, SERVING_SIGNATURE, TENSORFLOW, TRANSFORMED_LABEL_SIGNATURE, model_framework,
    read_labels_record)
from beam_ml.model.estimators import EstimatorModel

MAX_CLASSES = 100


def label_rows(keyed: tuple[str, pa.RecordBatch], label: str) -> Iterable[tuple[str, dict[Any, pa.RecordBatch]]]:
    """(split, {label value: a one-row batch holding it}) for a (split, batch); nothing if the batch has no such
    column. A float label is a quantity, not classes: {None: its value} if the batch has one value, else
    {None: None}."""
    split, batch = keyed
    if label not in batch.schema.names:
        return
    column = batch.column(label)
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        # tf.Example sources: one value per row, or none (a missing label)
        batch = batch.filter(pc.fill_null(pc.greater_equal(pc.list_value_length(column), 1), False))
        column = pc.list_element(batch.column(label), 0)
    distinct = pc.unique(column.drop_null())
    if len(distinct) == 0:
        return
    if pa.types.is_floating(column.type):
        yield split, {None: float(distinct[0].as_py())} if len(distinct) == 1 else {None: None}
        return
    found = {}
    for value in distinct.to_pylist()[:MAX_CLASSES + 1]:
        row = pc.index(column, value).as_py()
        # take() copies the row: a slice would carry (and pickle) the whole batch
        found[value.decode("utf-8", "replace") if isinstance(value, bytes) else value] = batch.take([row])
    yield split, found


class MergeLabelRows(beam.CombineFn):
    """Merges `label_rows` outputs of one split: one row per value, up to MAX_CLASSES + 1 values. A float label
    keeps {None: its single value} while it has one, else {None: None}."""

    def create_accumulator(self) -> dict:
        return {}

    def add_input(self, acc: dict, found: dict) -> dict:
        if not found:
            return acc
        if None in found or None in acc:
            if not acc:
                return dict(found)
            if None not in found or None not in acc:
                return {None: None}
            return acc if acc[None] == found[None] else {None: None}
        for value, row in found.items():
            if len(acc) > MAX_CLASSES:
                break
            acc.setdefault(value, row)
        return acc

    def merge_accumulators(self, accumulators: Iterable[dict]) -> dict:
        merged: dict = {}
        for acc in accumulators:
            merged = self.add_input(merged, acc)
        return merged

    def extract_output(self, acc: dict) -> dict:
        return acc


def split_values(found: dict[str, dict]) -> dict[str, Optional[list]]:
    """{split: sorted distinct label values, or None when the label is not a class label}."""
    values = {}
    for split, rows in sorted(found.items()):
        values[split] = None if None in rows or len(rows) > MAX_CLASSES else sorted(rows, key=str)
    return values


def is_constant(found: dict[str, dict]) -> Optional[Any]:
    """The single value the label has across every split ([value]), or None when it has more than one."""
    seen: set = set()
    for rows in found.values():
        if None in rows:
            if rows[None] is None:
                return None
            seen.add(rows[None])
        else:
            seen.update(rows)
        if len(seen) > 1:
            return None
    return [next(iter(seen))] if len(seen) == 1 else None


def label_failures(label: str, candidate: dict, baseline: Optional[dict], label_set_changed: bool,
                   constant: Optional[list], unsupervised: bool = False) -> list[str]:
    """Why the candidate must not be blessed, from its labels record, the baseline's (None without one), the
    label's single value (`is_constant`) and whether the module's model is `unsupervised`; [] if nothing is wrong."""
    failures = []
    if constant is not None and not (unsupervised and constant[0] == 0):
        failures.append(f"label {label!r} has one value in the whole run ({constant[0]!r}): a model of it "
                        f"predicts nothing")
    if baseline is None or label_set_changed:
        return failures
    for split, values in candidate["values"].items():
        before = baseline.get("values", {}).get(split)
        if values is None or before is None:
            continue
        lost = [v for v in before if v not in values]
        if lost:
            failures.append(f"the {split} split lacks label values the baseline model's {split} split had: "
                            f"{lost[:10]}{' …' if len(lost) > 10 else ''} (label_set_changed: true if on purpose)")
    seen_before = {v for values in baseline.get("values", {}).values() if values for v in values}
    new = sorted({v for values in candidate["values"].values() if values for v in values} - seen_before, key=str)
    if seen_before and new:
        failures.append(f"label values the baseline model never saw: {new[:10]}{' …' if len(new) > 10 else ''} "
                        f"(label_set_changed: true if on purpose)")
    if baseline.get("output_shape") and candidate["output_shape"] != baseline["output_shape"]:
        failures.append(f"the model's outputs have shape {candidate['output_shape']}, the baseline's "
                        f"{baseline['output_shape']} (label_set_changed: true if on purpose)")
    return failures


def _model_facts(model_dir: str, label: str, rows: dict[Any, pa.RecordBatch]) -> tuple[Optional[list], list]:
    """(class names in output order, or None; the outputs' shape) of the exported model."""
    from tfx_bsl.coders import example_coder
    values = list(rows)
    encoder = example_coder.RecordBatchToExamplesEncoder()
    examples = [encoder.encode(rows[v])[0] for v in values]
    if model_framework(model_dir) == TENSORFLOW:
        shape, indices = _saved_model_facts(model_dir, label, examples)
    else:
        model = EstimatorModel(model_dir)
        shape, indices = None, None
        if examples:  # (none for a float label)
            transformed, scores = model.label_and_scores(examples)
            shape = [None, scores.shape[1]]
            indices = transformed.tolist() if transformed.dtype.kind in "iu" else None
    if indices is None or len(indices) != len(values) or sorted(indices) != list(range(len(values))):
        return None, shape  # not a class index over exactly these values
    classes = [None] * len(values)
    for value, index in zip(values, indices):
        classes[index] = value
    return classes, shape


def _saved_model_facts(model_dir: str, label: str, examples: list[bytes]) -> tuple[list, Optional[list]]:
    """(the outputs' shape, the transformed label of each example as a list of ints or None) of a SavedModel."""
    import tensorflow as tf
    model = tf.saved_model.load(model_dir)
    shape = model.signatures[SERVING_SIGNATURE].structured_outputs[OUTPUT_KEY].shape.as_list()
    if not examples or TRANSFORMED_LABEL_SIGNATURE not in model.signatures:
        return shape, None
    transformed = model.signatures[TRANSFORMED_LABEL_SIGNATURE](examples=tf.constant(examples))[label]
    if isinstance(transformed, tf.SparseTensor):
        transformed = tf.sparse.to_dense(transformed)
    return shape, tf.reshape(transformed, [-1]).numpy().tolist() if transformed.dtype.is_integer else None


class JudgeLabels(beam.DoFn):
    """After training: writes the candidate's labels record into its model directory and emits the list of label
    failures (see the module docstring)."""

    def __init__(self, label: str, baseline_model: Optional[str], label_set_changed: bool, unsupervised: bool):
        self._label = label
        self._baseline_model = baseline_model
        self._label_set_changed = label_set_changed
        self._unsupervised = unsupervised

    def process(self, model_dir: str, found: dict):
        merged: dict = {}
        for rows in found.values():
            if None not in rows:
                for value, row in rows.items():
                    merged.setdefault(value, row)
        classes, shape = _model_facts(model_dir, self._label, merged if len(merged) <= MAX_CLASSES else {})
        record = {"label": self._label, "values": split_values(found), "classes": classes, "output_shape": shape}
        fileutil.write_json(os.path.join(model_dir, LABELS_RECORD), record)
        yield label_failures(self._label, record, read_labels_record(self._baseline_model),
                             self._label_set_changed, is_constant(found), self._unsupervised)


class CheckLabels(beam.PTransform):
    """The label guard's failures for a trained model, as a singleton list of reasons ([] when none).

    Example::

        failures = split_batches | CheckLabels("species", model_dir, baseline_dir, label_set_changed=False)
    """

    def __init__(self, label: str, model_dir: beam.PCollection[str], baseline_model: Optional[str],
                 label_set_changed: bool, unsupervised: bool = False):
        super().__init__()
        self._label = label
        self._model_dir = model_dir
        self._baseline_model = baseline_model
        self._label_set_changed = label_set_changed
        self._unsupervised = unsupervised

    def expand(self, split_batches: beam.PCollection[tuple[str, pa.RecordBatch]]) -> beam.PCollection[list[str]]:
        found = (split_batches
                 | "Values" >> beam.FlatMap(label_rows, self._label)
                 | "PerSplit" >> beam.CombinePerKey(MergeLabelRows())
                 | "ToDict" >> beam.combiners.ToDict())
        return self._model_dir | "Judge" >> beam.ParDo(
            JudgeLabels(self._label, self._baseline_model, self._label_set_changed, self._unsupervised),
            beam.pvalue.AsSingleton(found))
