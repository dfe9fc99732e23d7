"""Chicago taxi trips (the TFX taxi example): will the tip exceed 20% of the fare? Rows have fare > 0."""
from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from beam_ml.export import export_serving_model
from beam_ml.train import FnArgs
from transforms.features import fill_missing, vocabulary_index, z_score

LABEL = "tips"
FARE = "fare"
NUMERIC = ("trip_miles", "fare", "trip_seconds")
BUCKETIZED = ("pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude")
NUM_BUCKETS = 10
CATEGORICAL = ("payment_type", "company", "trip_start_hour", "trip_start_day", "trip_start_month",
               "pickup_community_area", "dropoff_community_area", "pickup_census_tract", "dropoff_census_tract")
VOCAB_TOP_K = 1000
OOV_BUCKETS = 10


def preprocessing_fn(inputs: dict) -> dict:
    outputs = {name: z_score(inputs[name]) for name in NUMERIC}
    for name in BUCKETIZED:
        outputs[name] = tft.bucketize(fill_missing(inputs[name], 0.0), NUM_BUCKETS)
    for name in CATEGORICAL:
        outputs[name] = vocabulary_index(inputs[name], name, top_k=VOCAB_TOP_K, num_oov_buckets=OOV_BUCKETS)
    fare = fill_missing(inputs[FARE], 0.0)
    tips = fill_missing(inputs[LABEL], 0.0)
    outputs[LABEL] = tf.cast(tf.greater(tips, 0.2 * fare), tf.int64)
    return outputs


def build_model(tf_transform_output: tft.TFTransformOutput, hidden_units: list, learning_rate: float):
    inputs, encoded = {}, []
    for name in NUMERIC:
        inputs[name] = tf_keras.Input(shape=(), name=name, dtype=tf.float32)
        encoded.append(tf_keras.layers.Reshape((1,))(inputs[name]))
    for name in BUCKETIZED:
        inputs[name] = tf_keras.Input(shape=(), name=name, dtype=tf.int64)
        encoded.append(tf_keras.layers.CategoryEncoding(num_tokens=NUM_BUCKETS + 1,
                                                        output_mode="one_hot")(inputs[name]))
    for name in CATEGORICAL:
        inputs[name] = tf_keras.Input(shape=(), name=name, dtype=tf.int64)
        size = tf_transform_output.vocabulary_size_by_name(name) + OOV_BUCKETS
        encoded.append(tf_keras.layers.CategoryEncoding(num_tokens=size, output_mode="one_hot")(inputs[name]))
    x = tf_keras.layers.Concatenate()(encoded)
    for units in hidden_units:
        x = tf_keras.layers.Dense(units, activation="relu")(x)
    outputs = tf_keras.layers.Dense(1, activation="sigmoid")(x)
    model = tf_keras.Model(inputs, outputs)
    model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate), loss="binary_crossentropy",
                  metrics=[tf_keras.metrics.AUC(name="auc")])
    return model


def run_fn(fn_args: FnArgs) -> None:
    hp = fn_args.hyperparameters
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    batch_size = int(hp.get("batch_size", 128))
    train = fn_args.make_dataset(fn_args.train_files, batch_size)
    evaluation = fn_args.make_dataset(fn_args.eval_files, batch_size, num_epochs=1, shuffle=False)
    model = build_model(tf_transform_output, list(hp.get("hidden_units", [64, 32])),
                        float(hp.get("learning_rate", 0.001)))
    model.fit(train, epochs=int(hp.get("epochs", 10)), steps_per_epoch=int(hp.get("steps_per_epoch", 100)),
              validation_data=evaluation, verbose=2)
    export_serving_model(model, tf_transform_output, fn_args.label, fn_args.serving_model_dir)
