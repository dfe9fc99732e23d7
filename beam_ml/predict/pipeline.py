"""The batch prediction job as one composite PTransform: rows from any source → serialized tf.Examples → Beam's
RunInference (tfx_bsl's in-process SavedModel handler on the serving signature) → one JSON line per row, keyed.

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
import pyarrow as pa
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference

from beam_ml.core import counts as measures
from beam_ml.core.counts import CountTotals
from beam_ml.core.deadletter import DEAD_LETTER, DeadLetter, WriteDeadLetters
from beam_ml.core.layout import RunLayout
from beam_ml.core.run import RunManifest
from beam_ml.ingest.read import ReadSplits
from beam_ml.ingest.split import AllRows
from beam_ml.model.artifact import OUTPUT_KEY, SERVING_SIGNATURE
from beam_ml.predict.plan import CLASS_COLUMN, PredictPlan
from beam_ml.report.publish import publish_run


class Predictions(NamedTuple):
    """What `BatchPredict` gives: `predictions` (one dict per row: its key and each output), the dead letters, and
    `manifest` (the record written to run_manifest.json, with counts {read, predicted, dead_letter})."""

    predictions: beam.PCollection[dict]
    dead_letter: beam.PCollection[DeadLetter]
    manifest: beam.PCollection[dict]


def model_handler(model_dir: str) -> ModelHandler:
    """tfx_bsl's Beam ModelHandler for the SavedModel's serialized-tf.Example signature, keyed by row key."""
    from tfx_bsl.public.beam.run_inference import CreateModelHandler
    from tfx_bsl.public.proto import model_spec_pb2

    spec = model_spec_pb2.InferenceSpecType(saved_model_spec=model_spec_pb2.SavedModelSpec(
        model_path=model_dir, signature_name=[SERVING_SIGNATURE]))
    return KeyedModelHandler(CreateModelHandler(spec))


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


def prediction_row(keyed_log: tuple, classes: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """(key, PredictionLog) → {"key": ..., "<output>": [values]} with each of the signature's outputs for that
    one row, flattened (a BigQuery REPEATED column; a JSON list); with `classes` (a classifier's class names in
    output order), also {"class": the name of the highest output}."""
    import tensorflow as tf

    key, log = keyed_log
    row: dict[str, Any] = {"key": key}
    for name, tensor in sorted(log.predict_log.response.outputs.items()):
        values = tf.make_ndarray(tensor).reshape(-1).tolist()  # the batch dimension is 1: one example per log
        row[name] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
    scores = row.get(OUTPUT_KEY)
    if classes and scores and len(scores) == len(classes) and CLASS_COLUMN not in row:
        row[CLASS_COLUMN] = classes[max(range(len(scores)), key=scores.__getitem__)]
    return row


def _to_json(row: dict) -> str:
    return json.dumps(row, sort_keys=True)


def failed_batch_dead_letters(failure: tuple) -> Iterator[DeadLetter]:
    """RunInference's (failed batch, (exception type, repr, traceback)) → one dead letter per row of the batch,
    with the row's serialized tf.Example (base64) so it can be inspected and replayed."""
    batch, (_, error, _) = failure
    for key, example in batch:
        yield DeadLetter("", 0, json.dumps({"key": key, "example_base64": base64.b64encode(example).decode()}),
                         f"inference failed: {error}"[:2000])


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
        predicted, failed = (examples["examples"]
                             | "RunInference" >> RunInference(model_handler(plan.model_dir))
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
        dead_letters = ((ingested.dead_letter, examples[DEAD_LETTER],
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
