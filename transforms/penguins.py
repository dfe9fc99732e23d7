"""Palmer penguins: species from island, sex and four body measurements (raw data with missing values)."""
from __future__ import annotations

import tensorflow_transform as tft
import tf_keras

from beam_ml.train.trainer import FnArgs
from transforms.features import fill_missing, vocabulary_index, z_score
from transforms.keras_recipes import encoded_inputs, fit_and_export

LABEL = "species"
NUMERIC = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")
CATEGORICAL = ("island", "sex")
OOV_BUCKETS = 1


def preprocessing_fn(inputs: dict) -> dict:
    outputs = {name: z_score(inputs[name]) for name in NUMERIC}
    for name in CATEGORICAL:
        outputs[name] = vocabulary_index(inputs[name], name, num_oov_buckets=OOV_BUCKETS)
    # The label's vocabulary has no OOV bucket: every training row has a species.
    outputs[LABEL] = tft.compute_and_apply_vocabulary(fill_missing(inputs[LABEL]), vocab_filename=LABEL)
    return outputs


def run_fn(fn_args: FnArgs) -> dict[str, float]:
    hp = fn_args.hyperparameters
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    inputs, x = encoded_inputs(NUMERIC, {name: tf_transform_output.vocabulary_size_by_name(name) + OOV_BUCKETS
                                         for name in CATEGORICAL})
    x = tf_keras.layers.Dense(int(hp.get("hidden_units", 16)), activation="relu")(x)
    outputs = tf_keras.layers.Dense(tf_transform_output.vocabulary_size_by_name(LABEL), activation="softmax")(x)
    model = tf_keras.Model(inputs, outputs)
    model.compile(optimizer=tf_keras.optimizers.Adam(float(hp.get("learning_rate", 0.01))),
                  loss="sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"])
    return fit_and_export(model, fn_args, tf_transform_output)
