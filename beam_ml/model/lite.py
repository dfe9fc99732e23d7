"""Edge: a model as TFLite, `model.tflite` beside its SavedModel, with a parity check against the SavedModel.

The TFLite model has the SavedModel's `serving_default` (serialized tf.Examples) and `serving_raw` (one [batch]
tensor per raw column) signatures, tf.Transform graph included. Its tables are made constant first
(`beam_ml.model.portable`); string splitting, hashing and example parsing are not TFLite builtins, so it uses
select TF ops: a runtime needs the Flex delegate (`pip install tensorflow`'s interpreter has it; on a device, link
`tensorflow-lite-select-tf-ops`). A quantized variant (`dynamic` range: int8 weights; `float16` weights) can be
written beside it as `model_<kind>.tflite`.

Parity: the TFLite interpreter and the SavedModel answer the same eval rows (serving_default: every row;
serving_raw: the rows with a value in every column), in one batch and as a batch of one row (a converted graph can
lose a tensor's rank and then fail on one row only); the record has the largest absolute difference of any output
and, when the rows carry the label, the metric each gets (accuracy; AUC too for a binary classifier). A float
model that differs by more than the bound is flagged, or keeps the model from being pushed under the `fail` policy.

    python -m beam_ml.model.lite MODEL_DIR | --serving_dir DIR [--quantization dynamic]
        # converts a model (or the newest pushed version); checks it on its warm-up requests
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any, Mapping, Optional, Sequence

import apache_beam as beam

from beam_ml.core import fileutil
from beam_ml.core.redact import clipped
from beam_ml.model.artifact import (OUTPUT_KEY, SERVING_RAW_SIGNATURE, SERVING_SIGNATURE,
                                    TRANSFORMED_LABEL_SIGNATURE)

LITE_FILE = "model.tflite"
QUANTIZATIONS = ("none", "dynamic", "float16")
LITE_SIGNATURES = (SERVING_SIGNATURE, SERVING_RAW_SIGNATURE)
POLICIES = ("flag", "fail")


def lite_file(quantization: str) -> str:
    """The file name of a variant: `model.tflite`, or `model_<kind>.tflite` for a quantized one."""
    return LITE_FILE if quantization == "none" else f"model_{quantization}.tflite"


def convert(portable_dir: str, signature_keys: Sequence[str], quantization: str = "none") -> bytes:
    """The TFLite flatbuffer of a portable SavedModel's signatures (`beam_ml.model.portable`)."""
    import tensorflow as tf
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization {quantization!r} is not one of {QUANTIZATIONS}")
    converter = tf.lite.TFLiteConverter.from_saved_model(portable_dir, signature_keys=list(signature_keys))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    if quantization != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def parity_inputs(signatures: Mapping[str, Any], examples: Sequence[bytes]) -> dict[str, dict[str, Any]]:
    """{signature: {input: numpy array}} for those of `LITE_SIGNATURES` the model has: `serving_default` takes
    every example; `serving_raw` the examples with one value in every column (left out when none has)."""
    import numpy as np
    import tensorflow as tf
    inputs: dict[str, dict[str, Any]] = {}
    if SERVING_SIGNATURE in signatures:
        inputs[SERVING_SIGNATURE] = {"examples": np.array(list(examples), dtype=object)}
    if SERVING_RAW_SIGNATURE in signatures:
        specs = signatures[SERVING_RAW_SIGNATURE].structured_input_signature[1]
        parsed = tf.io.parse_example(list(examples), {k: tf.io.VarLenFeature(s.dtype) for k, s in specs.items()})
        complete = np.ones(len(examples), dtype=bool)
        for sparse in parsed.values():
            complete &= np.bincount(sparse.indices[:, 0].numpy(), minlength=len(examples)) == 1
        if complete.any():
            inputs[SERVING_RAW_SIGNATURE] = {
                k: tf.sparse.to_dense(sparse).numpy()[complete][:, 0] for k, sparse in parsed.items()}
    return inputs


def example_labels(signatures: Mapping[str, Any], examples: Sequence[bytes]) -> Optional[Any]:
    """The transformed label of each example (the model's `transformed_label` signature), or None for a model
    without that signature or examples without the label."""
    import tensorflow as tf
    if TRANSFORMED_LABEL_SIGNATURE not in signatures:
        return None
    try:
        (labels,) = signatures[TRANSFORMED_LABEL_SIGNATURE](examples=tf.constant(list(examples))).values()
    except tf.errors.InvalidArgumentError:  # no label in the examples
        return None
    return labels.numpy().reshape(len(examples), -1)[:, 0]


def quality(scores: Any, labels: Any) -> dict[str, float]:
    """Metrics of a classifier's `scores` against integer `labels` (rows with a negative label left out):
    accuracy of the highest class, or for one sigmoid output accuracy at 0.5 and AUC; {} for other models."""
    import numpy as np
    scores = np.asarray(scores, dtype=np.float64).reshape(len(labels), -1)
    keep = np.asarray(labels) >= 0
    scores, labels = scores[keep], np.asarray(labels)[keep].astype(np.int64)
    if not len(labels):
        return {}
    if scores.shape[1] > 1:
        return {"accuracy": float((scores.argmax(axis=1) == labels).mean())}
    positive = labels == 1
    if not set(np.unique(labels)) <= {0, 1}:
        return {}
    metrics = {"accuracy": float(((scores[:, 0] >= 0.5) == positive).mean())}
    if 0 < positive.sum() < len(labels):
        metrics["auc"] = _auc(scores[:, 0], positive)
    return metrics


def _auc(scores: Any, positive: Any) -> float:
    """ROC AUC from ranks (Mann-Whitney U), ties counted half."""
    import numpy as np
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    _, tie_group, group_sizes = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.bincount(tie_group, weights=ranks) / group_sizes)[tie_group]
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def interpreter_outputs(flatbuffer: bytes, inputs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """{signature: {output: numpy array}} from the TFLite interpreter (with the Flex delegate)."""
    import tensorflow as tf
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    return {signature: interpreter.get_signature_runner(signature)(**feed) for signature, feed in inputs.items()}


def saved_model_outputs(signatures: Mapping[str, Any], inputs: Mapping[str, Mapping[str, Any]]
                        ) -> dict[str, dict[str, Any]]:
    """The same from the SavedModel's signatures."""
    import tensorflow as tf
    return {signature: {k: v.numpy() for k, v in signatures[signature](
        **{name: tf.constant(value) for name, value in feed.items()}).items()}
        for signature, feed in inputs.items()}


def max_difference(a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]]) -> float:
    """The largest absolute difference between two {signature: {output: array}} of the same shape."""
    import numpy as np
    return max((float(np.max(np.abs(np.asarray(a[s][k], np.float64) - np.asarray(b[s][k], np.float64))))
                for s in a for k in a[s] if np.asarray(a[s][k]).size), default=0.0)


def export_tflite(model_dir: str, examples: Sequence[bytes], quantization: str = "none",
                  bound: float = 1e-4, policy: str = "flag") -> dict:
    """Converts the model at `model_dir` (`model.tflite`, and `model_<quantization>.tflite` unless "none") and
    checks each variant on `examples` (see the module docstring). Returns the record: {variants: [{quantization,
    file, bytes, max_abs_difference, metrics: {name: {saved_model, tflite, change}}}], rows, raw_rows, bound,
    within_bound, policy, error, refusal (why the model must not be pushed, or None)}."""
    import tensorflow as tf

    from beam_ml.model.portable import write_portable_saved_model
    record: dict = {"variants": [], "rows": len(examples), "bound": bound, "policy": policy, "error": None}
    try:
        signatures = tf.saved_model.load(model_dir).signatures
        keys = [key for key in LITE_SIGNATURES if key in signatures]
        if not keys:
            raise ValueError(f"the model has none of the signatures {list(LITE_SIGNATURES)}")
        with tempfile.TemporaryDirectory(prefix="portable-") as portable:
            write_portable_saved_model(model_dir, portable, keys)
            flatbuffers = {kind: convert(portable, keys, kind) for kind in dict.fromkeys(("none", quantization))}
        inputs = parity_inputs(signatures, examples)
        raw = inputs.get(SERVING_RAW_SIGNATURE)
        record["raw_rows"] = len(next(iter(raw.values()))) if raw else 0
        one_row = {signature: {k: v[:1] for k, v in feed.items()} for signature, feed in inputs.items()}
        reference = saved_model_outputs(signatures, inputs)
        reference_one_row = saved_model_outputs(signatures, one_row)
        labels = example_labels(signatures, examples) if SERVING_SIGNATURE in inputs else None
        reference_quality = quality(reference[SERVING_SIGNATURE][OUTPUT_KEY], labels) if (
            labels is not None and OUTPUT_KEY in reference[SERVING_SIGNATURE]) else {}
        for kind, flatbuffer in flatbuffers.items():
            fileutil.write_bytes(os.path.join(model_dir, lite_file(kind)), flatbuffer)
            answers = interpreter_outputs(flatbuffer, inputs)
            answer_one_row = interpreter_outputs(flatbuffer, one_row)  # an app's usual batch
            lite_quality = quality(answers[SERVING_SIGNATURE][OUTPUT_KEY], labels) if reference_quality else {}
            record["variants"].append({
                "quantization": kind, "file": lite_file(kind), "bytes": len(flatbuffer),
                "max_abs_difference": max(max_difference(answers, reference),
                                          max_difference(answer_one_row, reference_one_row)),
                "metrics": {name: {"saved_model": value, "tflite": lite_quality[name],
                                   "change": lite_quality[name] - value}
                            for name, value in reference_quality.items()}})
    except Exception as e:  # the model's problem, told in the record
        record["error"] = clipped(f"{type(e).__name__}: {e}")
    difference = record["variants"][0]["max_abs_difference"] if record["variants"] else None
    record["within_bound"] = record["error"] is None and difference is not None and difference <= bound
    record["refusal"] = None if record["within_bound"] or policy != "fail" else (
        f"TFLite conversion failed: {record['error']}" if record["error"] else
        f"the TFLite model differs from the SavedModel by {difference:.3g} (bound {bound:g})")
    return record


class ExportTFLite(beam.DoFn):
    """`export_tflite` of the trained model on the parity sample (a side input of serialized tf.Examples with the
    label); emits the record."""

    def __init__(self, quantization: str, bound: float, policy: str):
        self._quantization, self._bound, self._policy = quantization, bound, policy

    def process(self, model_dir: str, examples: Sequence[bytes]):
        yield export_tflite(model_dir, examples, self._quantization, self._bound, self._policy)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from beam_ml.model.push import latest_model
    from beam_ml.model.serving import EXAMPLES_INPUT, read_warmup_requests
    parser = argparse.ArgumentParser(prog="python -m beam_ml.model.lite", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("model_dir", nargs="?", help="a SavedModel directory (a run's model or a pushed version)")
    where.add_argument("--serving_dir", help="a serving directory: its newest version")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default="none")
    parser.add_argument("--bound", type=float, default=1e-4)
    args = parser.parse_args(argv)
    model_dir = args.model_dir or latest_model(args.serving_dir)
    if model_dir is None:
        parser.error(f"--serving_dir {args.serving_dir} has no pushed version")
    import tensorflow as tf
    examples = [example for request in read_warmup_requests(model_dir)
                for example in tf.make_ndarray(request.inputs[EXAMPLES_INPUT]).tolist()]
    if not examples:
        parser.error(f"{model_dir} has no warm-up requests to check the TFLite model on")
    record = export_tflite(model_dir, examples, args.quantization, args.bound)
    print(json.dumps({"model_dir": model_dir, **record}, indent=1, sort_keys=True))
    return 0 if record["within_bound"] else 1


if __name__ == "__main__":
    sys.exit(main())
