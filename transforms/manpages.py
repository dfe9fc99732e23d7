"""Manual-page descriptions (examples/text): does a page document a command, a library function or a file format?
TF-IDF weights of the description's words (the vocabulary of the train split's most frequent words), a small Keras
model on them. `transforms.manpages_sklearn` trains a logistic regression on the same features.
"""
from __future__ import annotations

import tensorflow_transform as tft
import tf_keras

from beam_ml.train.trainer import FnArgs
from transforms.features import fill_missing, tfidf
from transforms.keras_recipes import fit_and_export

LABEL = "kind"
TEXT = "description"
VOCABULARY = 1000


def preprocessing_fn(inputs: dict) -> dict:
    return {TEXT: tfidf(inputs[TEXT], TEXT, top_k=VOCABULARY),
            LABEL: tft.compute_and_apply_vocabulary(fill_missing(inputs[LABEL]), vocab_filename=LABEL)}


def run_fn(fn_args: FnArgs) -> dict[str, float]:
    hp = fn_args.hyperparameters
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    words = tf_keras.Input(shape=(VOCABULARY + 1,), name=TEXT)
    x = tf_keras.layers.Dropout(float(hp.get("dropout", 0.2)))(words)
    x = tf_keras.layers.Dense(int(hp.get("hidden_units", 32)), activation="relu")(x)
    outputs = tf_keras.layers.Dense(tf_transform_output.vocabulary_size_by_name(LABEL), activation="softmax")(x)
    model = tf_keras.Model({TEXT: words}, outputs)
    model.compile(optimizer=tf_keras.optimizers.Adam(float(hp.get("learning_rate", 0.01))),
                  loss="sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"])
    return fit_and_export(model, fn_args, tf_transform_output)
