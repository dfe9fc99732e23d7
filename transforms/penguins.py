"""Palmer penguins: species from island, sex and four body measurements (raw data with missing values)."""
from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from beam_ml.export import export_serving_model
from beam_ml.train import FnArgs
from transforms.features import fill_missing, vocabulary_index, z_score

LABEL = "species"
NUMERIC = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")
CATEGORICAL = ("island", "sex")


def preprocessing_fn(inputs: dict) -> dict:
    outputs = {name: z_score(inputs[name]) for name in NUMERIC}
    for name in CATEGORICAL:
        outputs[name] = vocabulary_index(inputs[name], name)
    # The label's vocabulary has no OOV bucket: every training row has a species.
    outputs[LABEL] = tft.compute_and_apply_vocabulary(fill_missing(inputs[LABEL]), vocab_filename=LABEL)
    return outputs


def build_model(tf_transform_output: tft.TFTransformOutput, hidden_units: int, learning_rate: float):
    inputs, encoded = {}, []
    for name in NUMERIC:
        inputs[name] = tf_keras.Input(shape=(), name=name, dtype=tf.float32)
        encoded.append(tf_keras.layers.Reshape((1,))(inputs[name]))
    for name in CATEGORICAL:
        inputs[name] = tf_keras.Input(shape=(), name=name, dtype=tf.int64)
        size = tf_transform_output.vocabulary_size_by_name(name) + 1
        encoded.append(tf_keras.layers.CategoryEncoding(num_tokens=size, output_mode="one_hot")(inputs[name]))
    x = tf_keras.layers.Concatenate()(encoded)
    x = tf_keras.layers.Dense(hidden_units, activation="relu")(x)
    classes = tf_transform_output.vocabulary_size_by_name(LABEL)
    outputs = tf_keras.layers.Dense(classes, activation="softmax")(x)
    model = tf_keras.Model(inputs, outputs)
    model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"])
    return model


def run_fn(fn_args: FnArgs) -> None:
    hp = fn_args.hyperparameters
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    batch_size = int(hp.get("batch_size", 32))
    train = fn_args.make_dataset(fn_args.train_files, batch_size)
    evaluation = fn_args.make_dataset(fn_args.eval_files, batch_size, num_epochs=1, shuffle=False)
    model = build_model(tf_transform_output, int(hp.get("hidden_units", 16)), float(hp.get("learning_rate", 0.01)))
    model.fit(train, epochs=int(hp.get("epochs", 20)), steps_per_epoch=int(hp.get("steps_per_epoch", 20)),
              validation_data=evaluation, verbose=2)
    export_serving_model(model, tf_transform_output, fn_args.label, fn_args.serving_model_dir)
