"""Chicago taxi trips (the TFX taxi example): will the tip exceed 20% of the fare? Rows have fare > 0."""
from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from beam_ml.train.trainer import FnArgs
from transforms.features import fill_missing, vocabulary_index, z_score
from transforms.keras_recipes import encoded_inputs, fit_and_export

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


def run_fn(fn_args: FnArgs) -> dict[str, float]:
    hp = fn_args.hyperparameters
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    categorical = {name: NUM_BUCKETS + 1 for name in BUCKETIZED}
    categorical.update({name: tf_transform_output.vocabulary_size_by_name(name) + OOV_BUCKETS
                        for name in CATEGORICAL})
    inputs, x = encoded_inputs(NUMERIC, categorical)
    for units in hp.get("hidden_units", [64, 32]):
        x = tf_keras.layers.Dense(int(units), activation="relu")(x)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(1, activation="sigmoid")(x))
    model.compile(optimizer=tf_keras.optimizers.Adam(float(hp.get("learning_rate", 0.001))),
                  loss="binary_crossentropy", metrics=[tf_keras.metrics.AUC(name="auc")])
    return fit_and_export(model, fn_args, tf_transform_output)
