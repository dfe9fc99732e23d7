"""What TF Serving needs beside a pushed model, and what its clients send: warm-up requests, the model config, and
REST and gRPC request builders a service can import.

Requests (rows are {raw column: value}, a missing value None or absent):

    REST  POST http://HOST:8501/v1/models/NAME:predict   (JSON, TF Serving's row format)
      rest_example_request(rows, types)  {"signature_name": "serving_default", "instances": [{"b64": tf.Example}, ...]}
      rest_raw_request(rows)             {"signature_name": "serving_raw", "instances": [{column: value, ...}, ...]}
    gRPC  tensorflow.serving.PredictionService/Predict on HOST:8500
      grpc_example_request(rows, types, name)  PredictRequest, inputs["examples"]: serialized tf.Examples
      grpc_raw_request(rows, types, name)      PredictRequest, one input per raw column

`serving_default` takes any row (a missing value is an absent feature, imputed by the model's transform);
`serving_raw` takes one value per column for every row (no missing values), for clients that cannot build a
tf.Example. `answer_rest` and `answer_grpc` answer a request from a loaded SavedModel as TF Serving does (the REST
row format: one prediction per instance): the tests and infra validation (`beam_ml.model.infra`) use them.

Warm-up: `assets.extra/tf_serving_warmup_requests` (`WARMUP_FILE`) holds `PredictionLog` records, TF Serving's own
format, that it runs when it loads a version so that the first client request is not slow; `write_warmup_requests`
builds them from real rows. `model_config` is the `--model_config_file` text for a serving directory.
"""
from __future__ import annotations

import base64
import hashlib
import heapq
import json
import os
from typing import Any, Iterable, Mapping, Optional, Sequence

import apache_beam as beam

from beam_ml.model.artifact import SERVING_RAW_SIGNATURE, SERVING_SIGNATURE

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
EXAMPLES_INPUT = "examples"  # the serving_default signature's input


def serialized_examples(rows: Iterable[Mapping[str, Any]], types: Mapping[str, str]) -> list[bytes]:
    """Rows as serialized tf.Examples, each value typed as the model's raw schema says (`types`: {column: int |
    float | string}, `beam_ml.model.artifact.raw_column_types`); a missing value (None) is left out. ValueError
    naming a column the model does not know."""
    import tensorflow as tf
    out = []
    for row in rows:
        features = {}
        for column, value in row.items():
            if value is None:
                continue
            kind = types.get(column)
            if kind is None:
                raise ValueError(f"column {column!r} is not one of the model's raw features {sorted(types)}")
            if kind == "string":
                features[column] = tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[value if isinstance(value, bytes) else str(value).encode("utf-8")]))
            elif kind == "int":
                features[column] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
            else:
                features[column] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
        out.append(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    return out


def rest_example_request(rows: Iterable[Mapping[str, Any]], types: Mapping[str, str]) -> dict:
    """The REST body for `serving_default`: each row a base64 tf.Example (TF Serving's `{"b64": ...}`)."""
    return {"signature_name": SERVING_SIGNATURE,
            "instances": [{"b64": base64.b64encode(e).decode("ascii")} for e in serialized_examples(rows, types)]}


def _raw_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list]:
    """{column: values} of rows that all have a value in every column (what `serving_raw` takes)."""
    columns = sorted({c for row in rows for c in row})
    for number, row in enumerate(rows):
        missing = [c for c in columns if row.get(c) is None]
        if missing:
            raise ValueError(f"row {number} has no value for {missing}: serving_raw takes every column; send a "
                             f"tf.Example to serving_default instead")
    return {c: [row[c] for row in rows] for c in columns}


def rest_raw_request(rows: Sequence[Mapping[str, Any]]) -> dict:
    """The REST body for `serving_raw`: each row as {column: value}, every column present."""
    _raw_columns(rows)
    return {"signature_name": SERVING_RAW_SIGNATURE, "instances": [dict(row) for row in rows]}


def grpc_example_request(rows: Iterable[Mapping[str, Any]], types: Mapping[str, str], model_name: str,
                         version: Optional[int] = None) -> Any:
    """A gRPC `PredictRequest` for `serving_default` (model `model_name`, the newest version unless `version`)."""
    import tensorflow as tf
    request = _predict_request(model_name, SERVING_SIGNATURE, version)
    request.inputs[EXAMPLES_INPUT].CopyFrom(tf.make_tensor_proto(serialized_examples(rows, types), dtype=tf.string))
    return request


def grpc_raw_request(rows: Sequence[Mapping[str, Any]], types: Mapping[str, str], model_name: str,
                     version: Optional[int] = None) -> Any:
    """A gRPC `PredictRequest` for `serving_raw`: one [batch] tensor per column, of the type the model's raw schema
    gives it (`types`; gRPC, unlike REST, does not convert)."""
    import tensorflow as tf
    dtypes = {"int": tf.int64, "float": tf.float32, "string": tf.string}
    request = _predict_request(model_name, SERVING_RAW_SIGNATURE, version)
    for column, values in _raw_columns(rows).items():
        if column not in types:
            raise ValueError(f"column {column!r} is not one of the model's raw features {sorted(types)}")
        request.inputs[column].CopyFrom(tf.make_tensor_proto(
            [v.encode("utf-8") if isinstance(v, str) else v for v in values], dtype=dtypes[types[column]]))
    return request


def _predict_request(model_name: str, signature: str, version: Optional[int]) -> Any:
    from tensorflow_serving.apis import predict_pb2
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    return request


def answer_rest(signatures: Mapping[str, Any], body: Mapping[str, Any]) -> dict:
    """TF Serving's REST answer to `body` (row format) from a loaded model's `signatures`: {"predictions": one per
    instance: the output's value, or {output: value} for a signature with several outputs}."""
    import tensorflow as tf
    function = signatures[body.get("signature_name", SERVING_SIGNATURE)]
    inputs = function.structured_input_signature[1]
    instances = body["instances"]
    if len(inputs) == 1 and not all(isinstance(i, dict) and set(i) == set(inputs) for i in instances):
        (name,) = inputs  # one named input: each instance is its value
        columns = {name: [_json_value(i) for i in instances]}
    else:
        columns = {name: [_json_value(i[name]) for i in instances] for name in inputs}
    outputs = {k: v.numpy() for k, v in function(**{
        name: tf.constant(values, dtype=inputs[name].dtype) for name, values in columns.items()}).items()}
    if len(outputs) == 1:
        return {"predictions": _json_ready(next(iter(outputs.values())).tolist())}
    return {"predictions": [{k: _json_ready(v[i].tolist()) for k, v in outputs.items()}
                            for i in range(len(instances))]}


def _json_value(value: Any) -> Any:
    return base64.b64decode(value["b64"]) if isinstance(value, dict) and set(value) == {"b64"} else value


def _json_ready(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def answer_grpc(signatures: Mapping[str, Any], request: Any) -> Any:
    """TF Serving's gRPC `PredictResponse` to `request` from a loaded model's `signatures`."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2
    function = signatures[request.model_spec.signature_name or SERVING_SIGNATURE]
    outputs = function(**{name: tf.constant(tf.make_ndarray(tensor)) for name, tensor in request.inputs.items()})
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
    return response


def sample_examples(batch: Any, rows: int, without: Optional[str] = None) -> list[bytes]:
    """The first `rows` rows of a RecordBatch as serialized tf.Examples, without the column `without` when given
    (the label: requests as clients send them)."""
    import pyarrow as pa
    from tfx_bsl.coders import example_coder
    part = batch.slice(0, rows)
    keep = [i for i, name in enumerate(part.schema.names) if name != without]
    kept = pa.RecordBatch.from_arrays([part.column(i) for i in keep], [part.schema.names[i] for i in keep])
    return example_coder.RecordBatchToExamplesEncoder().encode(kept)


class ExampleSample(beam.PTransform[beam.PCollection, beam.PCollection[list[bytes]]]):
    """`rows` rows of RecordBatches as serialized tf.Examples (a singleton list), without the column `without`
    when given, the same ones for the same data: those whose bytes hash highest among the first `rows` of each
    batch.

    Example::

        warmup = eval_batches | ExampleSample(rows=10, without="species")   # unlabelled, as clients send them
    """

    def __init__(self, rows: int, without: Optional[str] = None):
        super().__init__()
        self._rows, self._without = rows, without

    def expand(self, batches: beam.PCollection) -> beam.PCollection[list[bytes]]:
        return (batches
                | "Examples" >> beam.FlatMap(sample_examples, self._rows, self._without)
                | "Pick" >> beam.CombineGlobally(_HighestHashes(self._rows)))


class _HighestHashes(beam.CombineFn):
    """The `n` inputs whose sha256 is highest, in that order (what Beam's `Top.Of` does, without the warning its
    per-bundle step logs in Beam 2.66)."""

    def __init__(self, n: int):
        self._n = n

    def _keep(self, items: list[bytes]) -> list[bytes]:
        return heapq.nlargest(self._n, items, key=lambda e: hashlib.sha256(e).digest())

    def create_accumulator(self) -> list[bytes]:
        return []

    def add_input(self, kept: list[bytes], example: bytes) -> list[bytes]:
        kept.append(example)
        return self._keep(kept) if len(kept) > 2 * self._n else kept

    def merge_accumulators(self, accumulators) -> list[bytes]:
        return self._keep([e for kept in accumulators for e in kept])

    def extract_output(self, kept: list[bytes]) -> list[bytes]:
        return self._keep(kept)


def with_warmup_requests(model_dir: str, examples: Sequence[bytes], model_name: str) -> str:
    """Writes the warm-up requests into `model_dir` (`write_warmup_requests`); returns `model_dir`."""
    write_warmup_requests(model_dir, examples, model_name)
    return model_dir


def write_warmup_requests(model_dir: str, examples: Sequence[bytes], model_name: str) -> str:
    """Writes `assets.extra/tf_serving_warmup_requests` into `model_dir`: one `serving_default` request of the
    serialized tf.Examples `examples` (rows as clients send them: no label). Returns its path."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2
    request = _predict_request(model_name, SERVING_SIGNATURE, None)
    request.inputs[EXAMPLES_INPUT].CopyFrom(tf.make_tensor_proto(list(examples), dtype=tf.string))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    path = os.path.join(model_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(log.SerializeToString())
    return path


def read_warmup_requests(model_dir: str) -> list[Any]:
    """The `PredictRequest`s of a model's warm-up file (none when it has no file)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2
    path = os.path.join(model_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return []
    return [prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
            for record in tf.data.TFRecordDataset(path)]


def model_config(name: str, base_path: str) -> str:
    """TF Serving's `--model_config_file` text serving the newest version under `base_path` as `name`."""
    return ("model_config_list {\n  config {\n"
            f"    name: {json.dumps(name)}\n    base_path: {json.dumps(base_path)}\n"
            "    model_platform: \"tensorflow\"\n"
            "    model_version_policy { latest { num_versions: 1 } }\n  }\n}\n")
