"""Sensor telemetry (`examples/telemetry`): an LSTM autoencoder over 2-hour windows (24 readings) of each sensor's four
channels, with a calibrated alert threshold (`transforms.window_autoencoder` says how it scores and calibrates).

Trained on windows: `--window_key sensor_id --window_time_key timestamp --window_length 24`.
"""
from transforms.window_autoencoder import WindowAutoencoder

WINDOW_LENGTH = 24  # the run refuses another --window_length
UNSUPERVISED = True  # it learns from the rows labelled normal: a history without anomalies is fine

_MODEL = WindowAutoencoder(channels=("temperature", "pressure", "current", "flow"), window_length=WINDOW_LENGTH,
                           label="is_anomaly", time="timestamp")
preprocessing_fn, run_fn = _MODEL.preprocessing_fn, _MODEL.run_fn
