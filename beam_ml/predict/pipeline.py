"""The batch prediction job as one composite PTransform: rows from any source → serialized tf.Examples → Beam's
RunInference → one JSON line per row, keyed. A TensorFlow model runs in tfx_bsl's in-process SavedModel handler on
its serving signature; a scikit-learn or XGBoost model gets its input rows from the model's transform graph
(`ToFeatureRows`), then runs in Beam's own handler for its framework.

Every row read ends up either in the predictions or in the dead letters (unparsable rows, rows without a key,
batches the model rejected), and the run record says how many of each: `read = predicted + dead_letter`.
Predictions go to JSON Lines files and, with `--bigquery_table`, to BigQuery too.
"""
from __future__ import annotations

import base64
import json
import os
from typing import Any, Iterator, NamedTuple, Optional, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from beam_ml.core import counts as measures
from beam_ml.core.counts import CountTotals
from beam_ml.core.deadletter import DEAD_LETTER, DeadLetter, WriteDeadLetters
from beam_ml.core.layout import RunLayout
from beam_ml.core.run import RunManifest
from beam_ml.ingest.read import ReadSplits
from beam_ml.ingest.split import AllRows
from beam_ml.model.artifact import (MODEL_FILES, OUTPUT_KEY, SERVING_SIGNATURE, SKLEARN, TENSORFLOW, XGBOOST,
                                    predicted_class)
from beam_ml.model.estimators import EstimatorModel, estimator_scores
from beam_ml.predict.plan import CLASS_COLUMN, PredictPlan
from beam_ml.report.publish import publish_run


class Predictions(NamedTuple):
    """What `BatchPredict` gives: `predictions` (one dict per row: its key and each output), the dead letters, and
    `manifest` (the record written to run_manifest.json, with counts {read, predicted, dead_letter})."""

    predictions: beam.PCollection[dict]
    dead_letter: beam.PCollection[DeadLetter]
    manifest: beam.PCollection[dict]


def model_handler(model_dir: str, framework: str = TENSORFLOW) -> ModelHandler:
    """The Beam ModelHandler for a model directory, keyed by row key: tfx_bsl's for a SavedModel's
    serialized-tf.Example signature, Beam's scikit-learn or XGBoost handler (on `ToFeatureRows`' rows) for those."""
    if framework == SKLEARN:
        from apache_beam.ml.inference.sklearn_inference import ModelFileType, SklearnModelHandlerNumpy
        return KeyedModelHandler(SklearnModelHandlerNumpy(os.path.join(model_dir, MODEL_FILES[SKLEARN]),
                                                          ModelFileType.JOBLIB, inference_fn=_sklearn_scores))
    if framework == XGBOOST:
        import xgboost
        from apache_beam.ml.inference.xgboost_inference import XGBoostModelHandlerNumpy
        return KeyedModelHandler(XGBoostModelHandlerNumpy(
            xgboost.Booster, os.path.join(model_dir, MODEL_FILES[XGBOOST]), inference_fn=_xgboost_scores))
    from tfx_bsl.public.beam.run_inference import CreateModelHandler
    from tfx_bsl.public.proto import model_spec_pb2

    spec = model_spec_pb2.InferenceSpecType(saved_model_spec=model_spec_pb2.SavedModelSpec(
        model_path=model_dir, signature_name=[SERVING_SIGNATURE]))
    return KeyedModelHandler(CreateModelHandler(spec))


def _sklearn_scores(model: Any, batch: Sequence[np.ndarray], inference_args: Optional[dict] = None) -> np.ndarray:
    return estimator_scores(model, SKLEARN, np.stack(batch))  # the handler pairs each row with its scores


def _xgboost_scores(batch: Sequence[np.ndarray], model: Any,
                    inference_args: Optional[dict] = None) -> list[PredictionResult]:
    return [PredictionResult(row, scores) for row, scores in zip(batch, estimator_scores(model, XGBOOST,
                                                                                       np.stack(batch)))]


class ToFeatureRows(beam.DoFn):
    """A batch of (key, serialized raw tf.Example) → (key, the model's input row) per example, through the transform
    graph of a scikit-learn or XGBoost model directory; a batch the graph rejects is dead-lettered row by row."""

    def __init__(self, model_dir: str):
        self._model_dir = model_dir

    def setup(self):
        self._model = EstimatorModel(self._model_dir)

    def process(self, keyed_examples: list[tuple[str, bytes]]) -> Iterator:
        try:
            rows = self._model.matrix(self._model.transform_examples([example for _, example in keyed_examples]))
        except Exception as e:  # the rows' problem (a value the graph cannot take), told in each dead letter
            for key, example in keyed_examples:
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, _example_dead_letter(
                    key, example, f"transform failed: {type(e).__name__}: {e}"))
            return
        for (key, _), row in zip(keyed_examples, rows):
            yield key, row


class ToKeyedExamples(beam.DoFn):
    """A RecordBatch → (key, serialized tf.Example) per row; rows without a key are dead-lettered."""

    def __init__(self, key_column: str):
        self._key_column = key_column

    def setup(self):
        from tfx_bsl.coders import example_coder
        self._encoder = example_coder.RecordBatchToExamplesEncoder()

    def process(self, batch: pa.RecordBatch) -> Iterator:
        keys = [values[0] if values else None for values in batch.column(self._key_column).to_pylist()]
        examples = self._encoder.encode(batch)
        for row, (key, example) in enumerate(zip(keys, examples)):
            if key is None:
                raw = json.dumps(batch.slice(row, 1).to_pylist()[0], default=_key_text, sort_keys=True)
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, DeadLetter(
                    "", 0, raw, f"no value in key column {self._key_column!r}"))
            else:
                yield _key_text(key), example


def _key_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def prediction_row(keyed_result: tuple, classes: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """(key, PredictionLog of a SavedModel, or PredictionResult of a scikit-learn or XGBoost model) → {"key": ...,
    "<output>": [values]} with each of the model's outputs for that one row (a scikit-learn or XGBoost model's scores
    are its `outputs`), flattened (a BigQuery REPEATED column; a JSON list); with `classes` (a classifier's class
    names in output order), also {"class": the name of the highest output}."""
    import tensorflow as tf

    key, result = keyed_result
    row: dict[str, Any] = {"key": key}
    if isinstance(result, PredictionResult):
        row[OUTPUT_KEY] = np.asarray(result.inference, dtype=np.float64).reshape(-1).tolist()
    else:
        for name, tensor in sorted(result.predict_log.response.outputs.items()):
            values = tf.make_ndarray(tensor).reshape(-1).tolist()  # the batch dimension is 1: one example per log
            row[name] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
    name = predicted_class(row.get(OUTPUT_KEY), classes)
    if name is not None and CLASS_COLUMN not in row:
        row[CLASS_COLUMN] = name
    return row


def _to_json(row: dict) -> str:
    return json.dumps(row, sort_keys=True)


def failed_batch_dead_letters(failure: tuple) -> Iterator[DeadLetter]:
    """RunInference's (failed batch, (exception type, repr, traceback)) → one dead letter per row of the batch,
    with the row's serialized tf.Example (base64), or a scikit-learn or XGBoost model's input row, so it can be
    inspected and replayed."""
    batch, (_, error, _) = failure
    for key, example in batch:
        if isinstance(example, bytes):
            yield _example_dead_letter(key, example, f"inference failed: {error}")
        else:
            yield DeadLetter("", 0, json.dumps({"key": key, "features": np.asarray(example).tolist()}),
                             f"inference failed: {error}"[:2000])


def _example_dead_letter(key: str, example: bytes, reason: str) -> DeadLetter:
    return DeadLetter("", 0, json.dumps({"key": key, "example_base64": base64.b64encode(example).decode()}),
                      reason[:2000])


def failed_insert_dead_letters(failure: tuple) -> DeadLetter:
    """A row BigQuery rejected (streaming inserts) → a dead letter with BigQuery's errors."""
    destination, row, errors = failure
    return DeadLetter(destination, 0, json.dumps(row, sort_keys=True), f"BigQuery rejected the row: {errors}"[:2000])


class WritePredictManifest(beam.DoFn):
    """Writes the run record once the predictions are written (`written` side inputs only order this step after
    the writes); a run whose counts do not add up is recorded as failed."""

    def __init__(self, manifest: RunManifest):
        self._manifest = manifest

    def process(self, _, counts: dict, **written: Any):
        if counts["read"] != counts["predicted"] + counts["dead_letter"]:
            error = f"counts do not add up: read {counts['read']} != predicted + dead_letter ({counts})"
            self._manifest.write("failed", counts=counts, error=error)
            raise RuntimeError(error)
        yield self._manifest.write("succeeded", counts=counts)


class BatchPredict(beam.PTransform[beam.pvalue.PBegin, Predictions]):
    """The batch prediction job as one composite PTransform.

    Example::

        plan = plan_predict(PredictConfig.load(None, {"input": "new/*.csv", "key_column": "id",
                                                      "serving_dir": "serving/penguins", "output_dir": "runs"}))
        with beam.Pipeline() as p:
            outputs = p | BatchPredict(plan)
    """

    def __init__(self, plan: PredictPlan):
        super().__init__()
        self._plan = plan

    def expand(self, pbegin: beam.pvalue.PBegin) -> Predictions:
        plan, split = self._plan, AllRows()
        ingested = pbegin | "Ingest" >> ReadSplits(plan.source, split, plan.config.allow_non_finite)
        examples = ingested.splits[split.name] | "ToExamples" >> beam.ParDo(
            ToKeyedExamples(plan.config.key_column)).with_outputs(DEAD_LETTER, main="examples")
        inputs, unscorable = examples["examples"], []
        if plan.framework != TENSORFLOW:
            rows = (inputs | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=1000)
                    | "ToFeatureRows" >> beam.ParDo(ToFeatureRows(plan.model_dir)).with_outputs(DEAD_LETTER,
                                                                                            main="rows"))
            inputs, unscorable = rows["rows"], [rows[DEAD_LETTER]]
        predicted, failed = (inputs
                             | "RunInference" >> RunInference(model_handler(plan.model_dir, plan.framework))
                             .with_exception_handling())
        predictions = predicted | "ToRows" >> beam.Map(prediction_row, plan.classes)
        written = {"files": (predictions | "ToJson" >> beam.Map(_to_json)
                             | "WritePredictions" >> beam.io.WriteToText(plan.predictions_prefix,
                                                                         file_name_suffix=".jsonl"))}
        counted = {}
        if plan.config.bigquery_table:
            result = predictions | "WriteBigQuery" >> beam.io.WriteToBigQuery(
                plan.config.bigquery_table, schema=plan.bigquery_schema, method=plan.config.bigquery_method,
                create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
                write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND)
            if plan.config.bigquery_method == "STREAMING_INSERTS":
                # Rows BigQuery rejected are in the prediction files but not in the table: kept and counted apart.
                rejected = result.failed_rows_with_errors | "RejectedRows" >> beam.Map(failed_insert_dead_letters)
                _ = rejected | "WriteRejectedRows" >> WriteDeadLetters(
                    os.path.join(plan.run.run_dir, "dead_letter", "bigquery_rejected"))
                counted["bigquery_rejected"] = rejected
                written["bigquery"] = result.failed_rows_with_errors
            else:
                written["bigquery"] = result.destination_load_jobid_pairs
        dead_letters = ((ingested.dead_letter, examples[DEAD_LETTER], *unscorable,
                         failed.failed_inferences | "FailedBatches" >> beam.FlatMap(failed_batch_dead_letters))
                        | "AllDeadLetters" >> beam.Flatten())
        _ = dead_letters | "WriteDeadLetters" >> WriteDeadLetters(
            RunLayout(plan.run.run_dir).dead_letter_prefix)
        counted = {"read": ingested.records_read, "predicted": predictions, "dead_letter": dead_letters, **counted}
        counts = counted | "Counts" >> CountTotals({**dict.fromkeys(counted, measures.one), "read": measures.value})
        manifest = (pbegin | "ManifestTrigger" >> beam.Create([None])
                    | "WriteManifest" >> beam.ParDo(WritePredictManifest(plan.manifest()),
                                                    counts=beam.pvalue.AsSingleton(counts),
                                                    **{k: beam.pvalue.AsList(v) for k, v in written.items()}))
        _ = manifest | "WriteReport" >> beam.Map(lambda unused_record: publish_run(plan.run.run_dir))
        return Predictions(predictions, dead_letters, manifest)
