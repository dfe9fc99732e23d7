"""Batch prediction with a pushed model: rows from any source (`beam_ml.inputs`) → serialized tf.Examples →
Beam's RunInference (tfx_bsl's in-process SavedModel handler on the `serving_default` signature) → one JSON line per
row, keyed.

`plan_predict` resolves the model (the newest version in `--serving_dir`, or `--model_dir`), the input (files, a
database, BigQuery) and its column types (from the model's raw schema, so rows parse as in training) before any
work, and fails with a `ConfigError` naming the option. `BatchPredict(plan)` is the whole job as one PTransform.
Every row read ends up either in the predictions or in the dead letters (unparsable rows, rows without a key,
batches the model rejected), and the run record says how many of each: `read = predicted + dead_letter`.
Predictions go to JSON Lines files and, with `--bigquery_table`, to BigQuery too.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
from typing import Any, Iterator, Optional

import apache_beam as beam
import pyarrow as pa
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference

from beam_ml.config import ConfigError, PredictConfig
from beam_ml.records import RecordFormat
from beam_ml.deadletter import DeadLetter, WriteDeadLetters
from beam_ml.export import raw_column_types
from beam_ml.ingest import DEAD_LETTER, RECORDS_READ, ReadSplits
from beam_ml.inputs import resolve_source
from beam_ml.manifest import RunManifest, package_versions, utc_now
from beam_ml.pipeline import absolute, count_one, key_value, new_run_dir, require_column
from beam_ml.push import SAVED_MODEL_FILE, latest_model
from beam_ml.sources import Source
from beam_ml.split import HashSplit

ALL_ROWS = HashSplit((("rows", 1),))
SIGNATURE = "serving_default"


@dataclasses.dataclass(frozen=True)
class PredictPlan:
    config: PredictConfig
    run_id: str
    run_dir: str
    model_dir: str
    source: Source
    started: str
    bigquery_schema: Optional[dict] = None

    @property
    def fmt(self) -> RecordFormat:
        return self.source.fmt

    @property
    def predictions_prefix(self) -> str:
        return os.path.join(self.run_dir, "predictions", "predictions")

    def manifest(self) -> RunManifest:
        return RunManifest(self.run_dir, {
            "run_id": self.run_id, "run_dir": self.run_dir, "started": self.started, "job": "batch_predict",
            "versions": package_versions(), "config": self.config.to_dict(), "model_dir": self.model_dir,
            "inputs": self.source.describe(),
            "record_format": {"columns": list(self.fmt.columns), "types": list(self.fmt.types)},
            "predictions": self.predictions_prefix + "-*.jsonl", "bigquery_table": self.config.bigquery_table})


def plan_predict(config: PredictConfig) -> PredictPlan:
    """Resolves the model, inputs and run directory; raises ConfigError naming the offending option."""
    import tensorflow as tf

    config = dataclasses.replace(config, **{name: absolute(getattr(config, name))
                                            for name in ("output_dir", "serving_dir", "model_dir")})
    if config.model_dir:
        if not tf.io.gfile.exists(os.path.join(config.model_dir, SAVED_MODEL_FILE)):
            raise ConfigError("model_dir", f"no SavedModel at {config.model_dir}")
        model_dir = config.model_dir
    else:
        model_dir = latest_model(config.serving_dir)
        if model_dir is None:
            raise ConfigError("serving_dir", f"no model version has been pushed to {config.serving_dir}")
    # The model's schema also types the label, which unlabelled data does not have: entries for columns not in
    # the header are ignored.
    model_types = raw_column_types(model_dir) or {}
    source = resolve_source(config, {**model_types, **config.column_types}).source
    require_column(source.fmt, config.key_column, "key_column")
    run_id, run_dir = new_run_dir(config.output_dir, config.run_id)
    return PredictPlan(config=config, run_id=run_id, run_dir=run_dir, model_dir=model_dir, source=source,
                       started=utc_now(),
                       bigquery_schema=bigquery_schema(model_dir) if config.bigquery_table else None)


def model_handler(model_dir: str) -> ModelHandler:
    """tfx_bsl's Beam ModelHandler for the SavedModel's serialized-tf.Example signature, keyed by row key."""
    from tfx_bsl.public.beam.run_inference import CreateModelHandler
    from tfx_bsl.public.proto import model_spec_pb2

    spec = model_spec_pb2.InferenceSpecType(saved_model_spec=model_spec_pb2.SavedModelSpec(
        model_path=model_dir, signature_name=[SIGNATURE]))
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


def prediction_row(keyed_log: tuple) -> dict[str, Any]:
    """(key, PredictionLog) → {"key": ..., "<output>": [values]} with each of the signature's outputs for that
    one row, flattened (a BigQuery REPEATED column; a JSON list)."""
    import tensorflow as tf

    key, log = keyed_log
    row: dict[str, Any] = {"key": key}
    for name, tensor in sorted(log.predict_log.response.outputs.items()):
        values = tf.make_ndarray(tensor).reshape(-1).tolist()  # the batch dimension is 1: one example per log
        row[name] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
    return row


def _to_json(row: dict) -> str:
    return json.dumps(row, sort_keys=True)


def bigquery_schema(model_dir: str) -> dict:
    """`key:STRING` plus one REPEATED column per output of the serving signature, as a TableSchema dict."""
    import tensorflow as tf

    outputs = tf.saved_model.load(model_dir).signatures[SIGNATURE].structured_outputs
    kinds = {tf.string: "STRING", tf.bool: "BOOLEAN"}
    fields = [{"name": "key", "type": "STRING", "mode": "REQUIRED"}]
    for name, spec in sorted(outputs.items()):
        kind = kinds.get(spec.dtype, "INTEGER" if spec.dtype.is_integer else "FLOAT")
        fields.append({"name": name, "type": kind, "mode": "REPEATED"})
    return {"fields": fields}


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
        counts = {**counts, **{name: counts.get(name, 0) for name in ("read", "predicted", "dead_letter")}}
        if counts["read"] != counts["predicted"] + counts["dead_letter"]:
            error = f"counts do not add up: read {counts['read']} != predicted + dead_letter ({counts})"
            self._manifest.write("failed", counts=counts, error=error)
            raise RuntimeError(error)
        yield self._manifest.write("succeeded", counts=counts)


class BatchPredict(beam.PTransform):
    """The batch prediction job as one composite PTransform.

    Example::

        plan = plan_predict(PredictConfig.load(None, {"input": "new/*.csv", "key_column": "id",
                                                      "serving_dir": "serving/penguins", "output_dir": "runs"}))
        with beam.Pipeline() as p:
            outputs = p | BatchPredict(plan)

    Outputs (dict): `predictions` (one dict per row), `dead_letter` and `manifest` (the record written to
    run_manifest.json, with counts {read, predicted, dead_letter}).
    """

    def __init__(self, plan: PredictPlan):
        super().__init__()
        self._plan = plan

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        plan = self._plan
        ingested = pbegin | "Ingest" >> ReadSplits(plan.source, ALL_ROWS)
        examples = ingested["rows"] | "ToExamples" >> beam.ParDo(
            ToKeyedExamples(plan.config.key_column)).with_outputs(DEAD_LETTER, main="examples")
        predicted, failed = (examples["examples"]
                             | "RunInference" >> RunInference(model_handler(plan.model_dir))
                             .with_exception_handling())
        predictions = predicted | "ToRows" >> beam.Map(prediction_row)
        written = {"files": (predictions | "ToJson" >> beam.Map(_to_json)
                             | "WritePredictions" >> beam.io.WriteToText(plan.predictions_prefix,
                                                                         file_name_suffix=".jsonl"))}
        keyed_counts = []
        if plan.config.bigquery_table:
            result = predictions | "WriteBigQuery" >> beam.io.WriteToBigQuery(
                plan.config.bigquery_table, schema=plan.bigquery_schema, method=plan.config.bigquery_method,
                create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
                write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND)
            if plan.config.bigquery_method == "STREAMING_INSERTS":
                # Rows BigQuery rejected are in the prediction files but not in the table: kept and counted apart.
                rejected = result.failed_rows_with_errors | "RejectedRows" >> beam.Map(failed_insert_dead_letters)
                _ = rejected | "WriteRejectedRows" >> WriteDeadLetters(
                    os.path.join(plan.run_dir, "dead_letter", "bigquery_rejected"))
                keyed_counts.append(rejected | "KeyRejected" >> beam.Map(count_one, "bigquery_rejected"))
                written["bigquery"] = result.failed_rows_with_errors
            else:
                written["bigquery"] = result.destination_load_jobid_pairs
        dead_letters = ((ingested[DEAD_LETTER], examples[DEAD_LETTER],
                         failed.failed_inferences | "FailedBatches" >> beam.FlatMap(failed_batch_dead_letters))
                        | "AllDeadLetters" >> beam.Flatten())
        _ = dead_letters | "WriteDeadLetters" >> WriteDeadLetters(
            os.path.join(plan.run_dir, "dead_letter", "dead_letter"))
        counts = (
            [ingested[RECORDS_READ] | "KeyRead" >> beam.Map(key_value, "read"),
             predictions | "KeyPredicted" >> beam.Map(count_one, "predicted"),
             dead_letters | "KeyDeadLetters" >> beam.Map(count_one, "dead_letter")] + keyed_counts
            | "AllCounts" >> beam.Flatten()
            | "SumCounts" >> beam.CombinePerKey(sum)
            | "CountsToDict" >> beam.combiners.ToDict())
        manifest = (pbegin | "ManifestTrigger" >> beam.Create([None])
                    | "WriteManifest" >> beam.ParDo(WritePredictManifest(plan.manifest()),
                                                    counts=beam.pvalue.AsSingleton(counts),
                                                    **{k: beam.pvalue.AsList(v) for k, v in written.items()}))
        return {"predictions": predictions, "dead_letter": dead_letters, "manifest": manifest}
