"""Checks of a pushed version's TF Serving side shared by the end-to-end tests: real eval rows as a job splits them,
and the REST and gRPC requests `beam_ml.model.serving` builds answered as batch prediction answered."""
import os
from typing import Optional

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf

from beam_ml.config.train import PipelineConfig
from beam_ml.ingest.files.source import plan_chunks, resolve_files
from beam_ml.ingest.split import HashSplit


def eval_rows(config_path: str, data: str, n: int, complete: bool = True) -> list[dict]:
    """`n` rows that the train job with `config_path` puts in its eval split of `data` (hashed as it does), spread
    over the file, without the label; a missing value is None (with `complete`, only rows with every value);
    floats as the CSV writes them."""
    config = PipelineConfig.load(config_path, {})
    files, fmt = resolve_files(data, config.column_types)
    batch = pa.Table.from_batches([parsed.batch for file in files for chunk in plan_chunks(file, 1 << 30)
                                   for parsed in chunk.parse(fmt)]).combine_chunks().to_batches()[0]
    split = HashSplit(tuple(config.split_buckets.items()), key=config.split_key)
    rows = []
    for record, index in zip(batch.to_pylist(), split.assign(batch)):
        if split.names[index] == "eval" and (all(record.values()) or not complete):
            values = {column: value[0] if value else None for column, value in record.items()
                      if column != config.label_key}
            rows.append({column: value.decode() if isinstance(value, bytes) else
                         float(f"{value:.7g}") if isinstance(value, float) else value  # float32 back to 40.3
                         for column, value in values.items()})
    assert len(rows) >= n
    return [rows[i * len(rows) // n] for i in range(n)]


def assert_serving_requests_give_batch_predictions(model_dir: str, rows: list[dict], expected: list,
                                                   model_name: str, label: str,
                                                   complete_rows: Optional[tuple[int, int]] = None) -> None:
    """The pushed version is ready for TF Serving (warm-up requests in its own format, without the label; a model
    config beside the versions), and the REST and gRPC requests for `rows` ({column: value or None}), answered
    from the SavedModel as TF Serving answers them, give batch prediction's outputs `expected`; so do the
    `serving_raw` requests of the rows with every value (their number within `complete_rows` when given)."""
    from tensorflow_serving.apis import prediction_log_pb2

    from beam_ml.model.artifact import raw_column_types
    from beam_ml.model.serving import (WARMUP_FILE, answer_grpc, answer_rest, grpc_example_request,
                                       grpc_raw_request, rest_example_request, rest_raw_request)
    [log] = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
             for r in tf.data.TFRecordDataset(os.path.join(model_dir, WARMUP_FILE))]
    warmup = tf.make_ndarray(log.predict_log.request.inputs["examples"])
    assert log.predict_log.request.model_spec.signature_name == "serving_default" and len(warmup) == 10
    assert all(tf.train.Example.FromString(e).features.feature.get(label) is None for e in warmup)  # no label
    config = open(os.path.join(os.path.dirname(model_dir), "models.config")).read()
    assert f'name: "{model_name}"' in config and f'base_path: "{os.path.dirname(model_dir)}"' in config

    types = raw_column_types(model_dir)
    typed = [{c: v for c, v in row.items() if c in types} for row in rows]
    signatures = tf.saved_model.load(model_dir).signatures
    np.testing.assert_allclose(answer_rest(signatures, rest_example_request(typed, types))["predictions"], expected,
                               rtol=1e-5, atol=1e-6)
    response = answer_grpc(signatures, grpc_example_request(typed, types, model_name))
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["outputs"]), expected, rtol=1e-5, atol=1e-6)
    complete = [i for i, row in enumerate(typed) if None not in row.values()]
    if complete_rows:
        assert complete_rows[0] <= len(complete) < complete_rows[1]
    if complete:
        for answer in (answer_rest(signatures, rest_raw_request([typed[i] for i in complete]))["predictions"],
                       tf.make_ndarray(answer_grpc(signatures, grpc_raw_request(
                           [typed[i] for i in complete], types, model_name)).outputs["outputs"])):
            np.testing.assert_allclose(answer, [expected[i] for i in complete], rtol=1e-5, atol=1e-6)
    if len(complete) < len(typed):
        with pytest.raises(ValueError, match="serving_raw takes every column"):
            rest_raw_request(typed)
