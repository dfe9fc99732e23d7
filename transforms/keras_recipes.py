"""Reusable tf_keras pieces for user modules: encoded inputs for transformed features, and fit-then-export."""
from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from beam_ml.model.export import export_serving_model
from beam_ml.train.trainer import FnArgs


def encoded_inputs(numeric: Sequence[str], categorical: dict[str, int]) -> tuple[dict, Any]:
    """Keras inputs for transformed features and their concatenation: numeric features as they are (float32,
    one value each), categorical ones (int64 indices) one-hot encoded over `categorical[name]` values."""
    inputs, encoded = {}, []
    for name in numeric:
        inputs[name] = tf_keras.Input(shape=(), name=name, dtype=tf.float32)
        encoded.append(tf_keras.layers.Reshape((1,))(inputs[name]))
    for name, size in categorical.items():
        inputs[name] = tf_keras.Input(shape=(), name=name, dtype=tf.int64)
        encoded.append(tf_keras.layers.CategoryEncoding(num_tokens=size, output_mode="one_hot")(inputs[name]))
    return inputs, tf_keras.layers.Concatenate()(encoded)


def fit_and_export(model: Any, fn_args: FnArgs, tf_transform_output: tft.TFTransformOutput) -> dict[str, float]:
    """Fits on the train files (validating on eval) with the `batch_size`, `epochs` and `steps_per_epoch`
    hyperparameters, then exports the serving model; returns the last epoch's metrics (`val_` ones on eval), which
    `run_fn` returns for tuning."""
    hp = fn_args.hyperparameters
    batch_size = int(hp.get("batch_size", 64))
    history = model.fit(fn_args.make_dataset(fn_args.train_files, batch_size), epochs=int(hp.get("epochs", 10)),
              steps_per_epoch=int(hp.get("steps_per_epoch", 100)),
              validation_data=fn_args.make_dataset(fn_args.eval_files, batch_size, num_epochs=1, shuffle=False),
              callbacks=[fn_args.epoch_progress()], verbose=0)
    export_serving_model(model, tf_transform_output, fn_args.label, fn_args.serving_model_dir)
    return {name: float(values[-1]) for name, values in history.history.items()}
