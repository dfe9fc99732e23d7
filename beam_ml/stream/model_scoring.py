"""Score sensor windows with the pushed window model (RunInference), picking up newly pushed versions as they land.

A window model is one trained with `--window_key` (e.g. `transforms.telemetry`): its SavedModel carries how windows
are cut (`assets.extra/windowing.json`) and the raw schema, so the streaming job learns the channels, the window
length and the alert threshold from the model itself. Its serving signature returns per window `score`,
`threshold` and `channel_errors`.

Hot reload: the model handler looks for a newer version under the serving directory at most every `poll_seconds`
(one directory listing) and swaps it in between batches; pushes are atomic renames (`beam_ml.model.push`), so a version
directory that is visible is complete. This works the same on every runner — RunInference's side-input route
(`WatchFilePattern`) needs PeriodicImpulse, which the local streaming runner used with Pub/Sub does not run.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.transforms.window import FixedWindows

from beam_ml.core.runtime import freeze_long_lived_objects
from beam_ml.core.windowing import SensorWindow
from beam_ml.model.artifact import SERVING_SIGNATURE, serialized_windows, window_model_info
from beam_ml.model.push import latest_model
from beam_ml.stream.elements import ScoredWindow, scored_window


class ServingModel:
    """The newest pushed window model of a serving directory, reloaded when a newer version appears."""

    def __init__(self, serving_dir: str, poll_seconds: float):
        self._serving_dir = serving_dir
        self._poll_seconds = poll_seconds
        self._checked_at = 0.0
        self.version: Optional[str] = None
        self.refresh()
        if self.version is None:
            raise ValueError(f"no model has been pushed to {serving_dir}")

    def refresh(self) -> None:
        """Loads the newest version if it is not the one in use (at most one directory listing per poll)."""
        import tensorflow as tf
        now = time.monotonic()
        if now - self._checked_at < self._poll_seconds:
            return
        self._checked_at = now
        newest = latest_model(self._serving_dir)
        if newest is None or os.path.basename(newest) == self.version:
            return
        self.info = window_model_info(newest)
        self._serve = tf.saved_model.load(newest).signatures[SERVING_SIGNATURE]
        self.version = os.path.basename(newest)
        freeze_long_lived_objects()  # the model's objects live until the next version (see beam_ml.core.runtime)

    def score(self, windows: Sequence[SensorWindow], detector: str = "model") -> list[ScoredWindow]:
        """The model's verdict on each window; a channel's error is its share of the score, on the threshold's
        scale."""
        import tensorflow as tf
        out = self._serve(examples=tf.constant(serialized_windows(windows, self.info.fmt, self.info.spec)))
        scores, thresholds, errors = (out[k].numpy() for k in ("score", "threshold", "channel_errors"))
        return [scored_window(w, s, t, row, detector, self.info.channels, self.version)
                for w, s, t, row in zip(windows, scores, thresholds, errors)]


_LOADED: dict[tuple[str, float], ServingModel] = {}


_LOADED_LOCK = threading.Lock()


class WindowModelHandler(ModelHandler[SensorWindow, ScoredWindow, ServingModel]):
    """RunInference handler: SensorWindow → ScoredWindow (the verdict itself rather than a PredictionResult to
    unwrap: a step less) with the newest pushed model."""

    def __init__(self, serving_dir: str, poll_seconds: float = 10.0, max_batch_size: int = 256,
                 detector: str = "model"):
        super().__init__()
        self._serving_dir = serving_dir
        self._poll_seconds = poll_seconds
        self._max_batch_size = max_batch_size
        self._detector = detector

    def load_model(self) -> ServingModel:
        # One ServingModel per serving directory and process: RunInference shares its model only while a DoFn
        # holds it, and the local streaming runner makes new DoFns every bundle; loading takes seconds.
        with _LOADED_LOCK:
            key = (self._serving_dir, self._poll_seconds)
            if key not in _LOADED:
                _LOADED[key] = ServingModel(self._serving_dir, self._poll_seconds)
            return _LOADED[key]

    def run_inference(self, batch: Sequence[SensorWindow], model: ServingModel,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[ScoredWindow]:
        model.refresh()
        return model.score(batch, self._detector)

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"max_batch_size": self._max_batch_size}

    def get_metrics_namespace(self) -> str:
        return "beam_ml.scoring"


class ScoreWithModel(beam.PTransform[beam.PCollection[SensorWindow], beam.PCollection[ScoredWindow]]):
    """Scores windows with the newest model pushed to `serving_dir`: a ScoredWindow per window, carrying the model
    version (alerts are those at or over the model's threshold, see `beam_ml.stream.verdicts.ToAlerts`). Verdicts come
    out in fixed event-time windows of `batch_window` seconds (the span a RunInference batch may gather).

    Example::

        alerts = windows | ScoreWithModel(serving_dir) | ToAlerts()
    """

    def __init__(self, serving_dir: str, detector: str = "model", poll_seconds: float = 10.0,
                 batch_window: float = 1.0):
        super().__init__()
        self._batch_window = batch_window
        self._handler = WindowModelHandler(serving_dir, poll_seconds, detector=detector)

    def expand(self, windows: beam.PCollection[SensorWindow]) -> beam.PCollection[ScoredWindow]:
        # RunInference batches within a Beam window; in the global window a batch is stamped with the end of time,
        # which would make every alert late for event-time sinks. Short fixed windows keep alerts near event time.
        return (windows
                | "BatchWindows" >> beam.WindowInto(FixedWindows(self._batch_window))
                | "RunInference" >> RunInference(self._handler))
