"""SKAB (the Skoltech Anomaly Benchmark's water-circulation testbed, `benchmarks.skab`): an LSTM autoencoder over
10-second windows (10 readings at 1 Hz) of a machine's eight channels, with a calibrated alert threshold
(`transforms.window_autoencoder` says how it scores and calibrates). The channels are SKAB's, with the space in
`Volume Flow RateRMS` made an underscore (column names are identifiers).

Trained on windows: `--window_key machine --window_time_key timestamp --window_length 10`.
"""
from transforms.window_autoencoder import WindowAutoencoder

CHANNELS = ("Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature", "Thermocouple",
            "Voltage", "Volume_Flow_RateRMS")
WINDOW_LENGTH = 10  # the run refuses another --window_length
UNSUPERVISED = True  # it learns from the rows labelled normal: SKAB's anomaly-free run is fine

_MODEL = WindowAutoencoder(CHANNELS, WINDOW_LENGTH, label="anomaly", time="timestamp")
preprocessing_fn, run_fn = _MODEL.preprocessing_fn, _MODEL.run_fn
