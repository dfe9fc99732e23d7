"""Exporting a trained tf_keras model for serving, with the tf.Transform graph inside.

Signatures of the SavedModel:
  * `serving_default`: serialized tf.Example (raw features, label optional) → `{"outputs": predictions}` (a model
    with several named outputs returns them all; one of them must be "outputs", what TFMA evaluates);
  * `transform_features`: serialized tf.Example → the transformed features;
  * `transformed_label`: serialized tf.Example → {label: transformed label}; TFMA reads the label here (and slices
    on the raw features, which full transformed features of the same names would shadow);
  * `serving_raw`: one tensor per raw feature (shape [batch]) → `{"outputs": ...}`, for JSON REST clients.

The raw schema goes with it (`assets.extra/raw_schema.pbtxt`), so batch prediction parses input columns with the
types the model was trained on.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import tensorflow as tf
import tensorflow_transform as tft

OUTPUT_KEY = "outputs"
RAW_SCHEMA = os.path.join("assets.extra", "raw_schema.pbtxt")


def _dense_to_sparse(values: tf.Tensor) -> tf.SparseTensor:
    """A [batch] tensor as the [batch, 1] SparseTensor the transform graph expects for a raw feature."""
    rows = tf.range(tf.shape(values, out_type=tf.int64)[0])
    return tf.SparseTensor(indices=tf.stack([rows, tf.zeros_like(rows)], axis=1), values=values,
                           dense_shape=tf.stack([tf.shape(values, out_type=tf.int64)[0], tf.constant(1, tf.int64)]))


def serving_signatures(model: Any, tf_transform_output: tft.TFTransformOutput, label: str) -> dict:
    """The signatures above, for `model.save(..., signatures=...)`."""
    model.tft_layer = tf_transform_output.transform_features_layer()  # tracked, so its assets are saved
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = {k: v for k, v in raw_spec.items() if k != label}

    def predict(transformed: dict) -> dict:
        features = {k: v for k, v in transformed.items() if k != label}
        outputs = model(features)
        return dict(outputs) if isinstance(outputs, dict) else {OUTPUT_KEY: outputs}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples):
        return predict(model.tft_layer(tf.io.parse_example(examples, serving_spec)))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples):
        return model.tft_layer(tf.io.parse_example(examples, raw_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transformed_label(examples):
        return {label: model.tft_layer(tf.io.parse_example(examples, raw_spec))[label]}

    @tf.function(input_signature=[{k: tf.TensorSpec([None], spec.dtype, name=k) for k, spec in serving_spec.items()}])
    def serve_raw(features):
        return predict(model.tft_layer({k: _dense_to_sparse(v) for k, v in features.items()}))

    return {"serving_default": serve_examples.get_concrete_function(),
            "transform_features": transform_features.get_concrete_function(),
            "transformed_label": transformed_label.get_concrete_function(),
            "serving_raw": serve_raw.get_concrete_function()}


def export_serving_model(model: Any, tf_transform_output: tft.TFTransformOutput, label: str, path: str) -> None:
    """Saves `model` as a SavedModel at `path` with the signatures above."""
    model.save(path, save_format="tf", signatures=serving_signatures(model, tf_transform_output, label))
    tf.io.gfile.makedirs(os.path.join(path, os.path.dirname(RAW_SCHEMA)))
    with tf.io.gfile.GFile(os.path.join(path, RAW_SCHEMA), "w") as f:
        f.write(str(tf_transform_output.raw_metadata.schema))


def raw_column_types(model_dir: str) -> Optional[dict[str, str]]:
    """{column: int|float|string} from the model's raw schema, or None for a model exported without one."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    from beam_ml.records import TFMD_TYPES

    path = os.path.join(model_dir, RAW_SCHEMA)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    names = {tfmd: kind for kind, tfmd in TFMD_TYPES.items()}
    return {feature.name: names[feature.type] for feature in schema.feature if feature.type in names}
