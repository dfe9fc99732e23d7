"""Exporting a trained tf_keras model for serving, with the tf.Transform graph inside: the signatures and raw schema
that `beam_ml.model.artifact` describes.
"""
from __future__ import annotations

import os
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from beam_ml.core import fileutil
from beam_ml.model.artifact import (
    OUTPUT_KEY,
    RAW_SCHEMA,
    SERVING_RAW_SIGNATURE,
    SERVING_SIGNATURE,
    TRANSFORM_FEATURES_SIGNATURE,
    TRANSFORMED_LABEL_SIGNATURE,
)


def _dense_to_sparse(values: tf.Tensor) -> tf.SparseTensor:
    """A [batch] tensor as the [batch, 1] SparseTensor the transform graph expects for a raw feature."""
    rows = tf.range(tf.shape(values, out_type=tf.int64)[0])
    return tf.SparseTensor(indices=tf.stack([rows, tf.zeros_like(rows)], axis=1), values=values,
                           dense_shape=tf.stack([tf.shape(values, out_type=tf.int64)[0], tf.constant(1, tf.int64)]))


def serving_signatures(model: Any, tf_transform_output: tft.TFTransformOutput, label: str) -> dict:
    """The signatures `beam_ml.model.artifact` lists, for `model.save(..., signatures=...)`."""
    model.tft_layer = tf_transform_output.transform_features_layer()  # tracked, so its assets are saved
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = {k: v for k, v in raw_spec.items() if k != label}

    fixed_shapes = {k: spec.shape for k, spec in tf_transform_output.transformed_feature_spec().items()
                    if isinstance(spec, tf.io.FixedLenFeature)}

    def predict(transformed: dict) -> dict:
        # A lookup's output has no known rank after conversion to TFLite, where an op that needs it then fails on
        # a batch of one row: the declared shape, a no-op in TensorFlow, keeps it known.
        features = {k: tf.reshape(v, [-1, *fixed_shapes[k]]) if k in fixed_shapes else v
                    for k, v in transformed.items() if k != label}
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

    return {SERVING_SIGNATURE: serve_examples.get_concrete_function(),
            TRANSFORM_FEATURES_SIGNATURE: transform_features.get_concrete_function(),
            TRANSFORMED_LABEL_SIGNATURE: transformed_label.get_concrete_function(),
            SERVING_RAW_SIGNATURE: serve_raw.get_concrete_function()}


def export_serving_model(model: Any, tf_transform_output: tft.TFTransformOutput, label: str, path: str) -> None:
    """Saves `model` as a SavedModel at `path` with those signatures and the raw schema."""
    model.save(path, save_format="tf", signatures=serving_signatures(model, tf_transform_output, label))
    write_raw_schema(tf_transform_output, path)


def write_raw_schema(tf_transform_output: tft.TFTransformOutput, model_dir: str) -> None:
    """The raw schema the model was trained on, in its `assets.extra/` (what batch prediction parses input with)."""
    fileutil.write_text(os.path.join(model_dir, RAW_SCHEMA), str(tf_transform_output.raw_metadata.schema))
