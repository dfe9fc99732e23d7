"""An LSTM autoencoder over sensor windows with a calibrated alert threshold: a module recipe for window models.

A user module trained on windows (`--window_key sensor_id --window_time_key timestamp --window_length n`) names its
channels and window length and takes its `preprocessing_fn` and `run_fn` from a `WindowAutoencoder`::

    WINDOW_LENGTH = 24  # the pipeline checks --window_length against it
    UNSUPERVISED = True  # the label picks the normal rows to learn from: a run without anomalies is not refused
    _MODEL = WindowAutoencoder(channels=("temperature", "pressure"), window_length=WINDOW_LENGTH, label="is_anomaly")
    preprocessing_fn, run_fn = _MODEL.preprocessing_fn, _MODEL.run_fn

Each channel is z-scored with tf.Transform (statistics over the train windows' readings), the autoencoder learns to
reconstruct normal windows, and a window's anomaly score compares its reconstruction error with what normal windows
show: per channel, the mean squared error over the window and the largest single-reading error, each divided by its
typical value on held-out normal windows; the score is the largest of these ratios. The alert threshold is the
`threshold_quantile` of the scores of held-out normal train windows (the newest `calibration_fraction` of them, never
used for fitting and never eval data), so eval precision and recall are honest.

The exported model returns, per window: `outputs` = score / (score + threshold) (0.5 at the threshold: what TFMA
evaluates, so Precision/Recall at 0.5 are the alerts' precision and recall), `score`, `threshold` and
`channel_errors` (the per-channel ratios, for the channels that contributed most to an alert).

Hyperparameters: `lstm_units` (32), `learning_rate` (0.003), `batch_size` (128), `epochs` (10),
`calibration_fraction` (0.2), `threshold_quantile` (0.995).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from beam_ml.model.artifact import OUTPUT_KEY
from beam_ml.model.export import export_serving_model
from beam_ml.train.trainer import FnArgs
from transforms.features import window_values

WINDOW_END = "window_end"  # passed through for the time-ordered calibration hold-out; not a model input


class WindowScore(tf_keras.layers.Layer):
    """(windows, reconstructions) [batch, length, channels] → the outputs described in the module docstring."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channel_scale = self.add_weight(name="channel_scale", shape=(channels,), initializer="ones",
                                             trainable=False)
        self.point_scale = self.add_weight(name="point_scale", shape=(channels,), initializer="ones", trainable=False)
        self.threshold = self.add_weight(name="threshold", shape=(), initializer="ones", trainable=False)

    def call(self, inputs):
        windows, reconstructed = inputs
        squared = tf.square(windows - reconstructed)
        ratios = tf.maximum(tf.reduce_mean(squared, axis=1) / self.channel_scale,
                            tf.reduce_max(squared, axis=1) / self.point_scale)
        score = tf.reduce_max(ratios, axis=1)
        threshold = tf.fill(tf.shape(score), self.threshold)
        return {OUTPUT_KEY: score / (score + threshold), "score": score, "threshold": threshold,
                "channel_errors": ratios}


class WindowAutoencoder:
    """`preprocessing_fn` and `run_fn` of a window model over `channels` (raw float columns), `window_length`
    readings per window, labelled by `label` (a window is anomalous if any of its readings is), its readings' times
    in `time`. See the module docstring."""

    def __init__(self, channels: Sequence[str], window_length: int, label: str, time: str = "timestamp"):
        self.channels, self.window_length, self.label, self.time = tuple(channels), window_length, label, time

    def preprocessing_fn(self, inputs: dict) -> dict:
        outputs = {name: tft.scale_to_z_score(window_values(inputs[name], self.window_length))
                   for name in self.channels}
        outputs[WINDOW_END] = tf.reduce_max(window_values(inputs[self.time], self.window_length), axis=1)
        outputs[self.label] = tf.reduce_max(window_values(inputs[self.label], self.window_length), axis=1)
        return outputs

    def autoencoder(self, hp: dict) -> tf_keras.Model:
        units, length, width = int(hp.get("lstm_units", 32)), self.window_length, len(self.channels)
        windows = tf_keras.Input(shape=(length, width), name="windows")
        code = tf_keras.layers.LSTM(units, name="encoder")(windows)
        x = tf_keras.layers.RepeatVector(length)(code)
        x = tf_keras.layers.LSTM(units, return_sequences=True, name="decoder")(x)
        reconstructed = tf_keras.layers.TimeDistributed(tf_keras.layers.Dense(width), name="reconstruction")(x)
        model = tf_keras.Model(windows, reconstructed)
        model.compile(optimizer=tf_keras.optimizers.Adam(float(hp.get("learning_rate", 0.003))), loss="mse")
        return model

    def load_windows(self, fn_args: FnArgs, files) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(windows [n, length, channels], labels [n], window end times [n]) of transformed examples, in time
        order."""
        parts = [[], [], []]
        for features, labels in fn_args.make_dataset(files, batch_size=4096, num_epochs=1, shuffle=False):
            parts[0].append(np.stack([features[name].numpy() for name in self.channels], axis=-1))
            parts[1].append(labels.numpy())
            parts[2].append(features[WINDOW_END].numpy())
        windows, labels, ends = (np.concatenate(p) for p in parts)
        order = np.argsort(ends, kind="stable")
        return windows[order], labels[order], ends[order]

    def run_fn(self, fn_args: FnArgs) -> None:
        hp = fn_args.hyperparameters
        windows, labels, _ = self.load_windows(fn_args, fn_args.train_files)
        normal = windows[labels == 0]
        calibration_size = max(1, int(len(normal) * float(hp.get("calibration_fraction", 0.2))))
        fit, calibration = normal[:-calibration_size], normal[-calibration_size:]

        model = self.autoencoder(hp)
        rng = np.random.default_rng(fn_args.seed)
        fit = fit[rng.permutation(len(fit))]
        model.fit(fit, fit, batch_size=int(hp.get("batch_size", 128)), epochs=int(hp.get("epochs", 10)),
                  validation_data=(calibration, calibration), callbacks=[fn_args.epoch_progress()], verbose=0)

        channels = self.channels
        windows_in = {name: tf_keras.Input(shape=(self.window_length,), name=name) for name in channels}
        stacked = tf_keras.layers.Lambda(lambda d: tf.stack([d[n] for n in channels], axis=-1),
                                         name="stack_channels")(windows_in)
        scoring = WindowScore(len(channels), name="window_score")
        scorer = tf_keras.Model(windows_in, scoring([stacked, model(stacked)]))

        squared = np.square(calibration - model.predict(calibration, batch_size=1024, verbose=0))
        scoring.channel_scale.assign(squared.mean(axis=1).mean(axis=0))
        scoring.point_scale.assign(squared.max(axis=1).mean(axis=0))
        scores = scorer.predict({name: calibration[..., i] for i, name in enumerate(channels)}, batch_size=1024,
                                verbose=0)["score"]
        scoring.threshold.assign(float(np.quantile(scores, float(hp.get("threshold_quantile", 0.995)))))
        print(f"calibrated on {len(calibration)} held-out normal windows: threshold {float(scoring.threshold):.4g}")
        export_serving_model(scorer, tft.TFTransformOutput(fn_args.transform_output), fn_args.label,
                             fn_args.serving_model_dir)
