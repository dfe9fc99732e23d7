"""Scoring windows with online detectors whose state is kept per sensor in Beam state (a stateful DoFn keyed by
sensor, so it is correct on any runner).

Data contract: `ScoreWindows(specs)`: PCollection[SensorWindow] (each sensor's windows in event-time order, as
`beam_ml.stream.order.WindowPerSensor` emits them) → PCollection[ScoredWindow], one per window and detector, at the
window's timestamp.
"""
from __future__ import annotations

from typing import Iterable, Sequence, Union

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from beam_ml.core.windowing import SensorWindow
from beam_ml.stream.detectors.base import DetectorSpec
from beam_ml.stream.detectors.context import DetectorConfig
from beam_ml.stream.elements import ScoredWindow, scored_window

METRICS_NAMESPACE = "beam_ml.detectors"


def key_by_sensor(window: SensorWindow) -> tuple[str, SensorWindow]:
    return window.sensor_id, window


class ScoreWindowsFn(beam.DoFn):
    """Keyed by sensor: scores each window with each of the sensor's detectors, kept in state between windows."""

    DETECTORS = ReadModifyWriteStateSpec("detectors", PickleCoder())

    def __init__(self, specs: Sequence[DetectorSpec], channels: Sequence[str]):
        self._specs = tuple(specs)
        self._channels = tuple(channels)
        self._scored = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "windows_scored")

    def process(self, element, state=beam.DoFn.StateParam(DETECTORS)) -> Iterable[ScoredWindow]:
        sensor, window = element
        detectors = state.read() or [spec.build(len(window.values[0]), sensor) for spec in self._specs]
        verdicts = []
        for detector in detectors:
            score, channel_scores = detector.score_window(window)
            verdicts.append(scored_window(window, score, detector.threshold, channel_scores, detector.name,
                                          self._channels))
        state.write(detectors)
        self._scored.inc()
        # Keeps the window's timestamp (its release): re-stamping to its end would make it late downstream.
        yield from verdicts


class ScoreWindows(beam.PTransform[beam.PCollection[SensorWindow], beam.PCollection[ScoredWindow]]):
    """Scores each sensor's windows with online detectors whose state is kept per sensor in Beam state: one
    ScoredWindow per window and detector.

    The windows of a sensor must come in event-time order (as `WindowPerSensor` emits them).

    Example::

        windows = (readings | WindowPerSensor(length=8, stride=1)).windows
        scores = windows | ScoreWindows([DetectorConfig(), BeamDetectorSpec("zscore")],
                                        channels=["temperature", "pressure"])

    Args:
      detectors: `DetectorSpec`s (e.g. `DetectorConfig()` for a `ContextDetector` per sensor, `BeamDetectorSpec("iqr")`
        for Beam's IQR per channel); one alone may be given without a list.
      channels: channel names, in the windows' value order, for `top_channels` (default: "0", "1", ...).
    """

    def __init__(self, detectors: Union[DetectorSpec, Sequence[DetectorSpec]] = DetectorConfig(),
                 channels: Sequence[str] = ()):
        super().__init__()
        specs = list(detectors) if isinstance(detectors, (list, tuple)) else [detectors]
        if not specs or not all(isinstance(d, DetectorSpec) for d in specs):
            raise ValueError(f"detectors must be DetectorSpecs, got {detectors!r}")
        self._specs = specs
        self._channels = tuple(channels)

    def expand(self, windows: beam.PCollection[SensorWindow]) -> beam.PCollection[ScoredWindow]:
        return (windows
                | "KeyBySensor" >> beam.Map(key_by_sensor).with_output_types(beam.typehints.KV[str, SensorWindow])
                | "Score" >> beam.ParDo(ScoreWindowsFn(self._specs, self._channels)))
