"""Beam's own online univariate detectors (`apache_beam.ml.anomaly`: ZScore, RobustZScore, IQR) as beam_ml detectors:
one per channel, run inside beam_ml's keyed state.

They run there rather than through Beam's `AnomalyDetection` transform, which does not fit a long-running streaming
job: its step names carry a random suffix per construction (Dataflow's `--update` matches steps by name), it
reshuffles readings before scoring (losing the event-time order each sensor's windows come in), and its ensembles
group verdicts with a GroupByKey in the global window, which Beam refuses on an unbounded input.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import apache_beam as beam

from beam_ml.stream.detectors.base import DetectorSpec, WindowDetector

BEAM_DETECTORS = ("zscore", "robust_zscore", "iqr")


def beam_detector(kind: str):
    """A new univariate detector of Beam's `apache_beam.ml.anomaly` (its defaults: sliding windows of 1000
    readings; thresholds 3 for the z-scores, 1.5 for IQR) on a feature named "value"."""
    if kind == "zscore":
        from apache_beam.ml.anomaly.detectors.zscore import ZScore as detector
    elif kind == "robust_zscore":
        from apache_beam.ml.anomaly.detectors.robust_zscore import RobustZScore as detector
    elif kind == "iqr":
        from apache_beam.ml.anomaly.detectors.iqr import IQR as detector
    else:
        raise ValueError(f"unknown Beam detector {kind!r}: one of {', '.join(BEAM_DETECTORS)}")
    return detector(features=["value"])


class BeamDetector(WindowDetector):
    """`WindowDetector` with one of Beam's online univariate detectors (`beam_detector(kind)`) per channel: each
    reading is scored, then learnt, as Beam's `AnomalyDetection` does. Its score is the detector's own (|z| for the
    z-scores, distance from the quartiles in IQRs for IQR) and so is the threshold: the detector's fixed threshold
    unless `threshold` is given. The first `warmup` readings of a sensor score 0 (Beam's trackers give NaN or
    spurious scores from their first few readings).

    Example::

        detector = BeamDetector("robust_zscore", n_channels=4)
        score, channel_scores = detector.score_window(window)
    """

    def __init__(self, kind: str, n_channels: int, threshold: Optional[float] = None, warmup: int = 30):
        super().__init__(n_channels)
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        self._detectors = [beam_detector(kind) for _ in range(n_channels)]
        self.name = kind
        self.threshold = float(self._detectors[0]._threshold_criterion.threshold if threshold is None else threshold)
        if not self.threshold > 0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")
        self._warmup = warmup
        self._seen = 0

    def update(self, timestamp: float, values: Sequence[float]) -> tuple[float, ...]:
        scores = []
        for detector, value in zip(self._detectors, values):
            reading = beam.Row(value=float(value))
            score = detector.score_one(reading)
            detector.learn_one(reading)
            scores.append(0.0 if score is None or math.isnan(score) else float(score))
        self._seen += 1
        return tuple(scores) if self._seen > self._warmup else (0.0,) * len(scores)


@dataclasses.dataclass(frozen=True)
class BeamDetectorSpec(DetectorSpec):
    """A `BeamDetector` of `kind` ("zscore", "robust_zscore" or "iqr") per sensor; `threshold` None: the detector's
    own.

    Example::

        scores = windows | ScoreWindows([BeamDetectorSpec("robust_zscore"), BeamDetectorSpec("iqr", 2.0)])
    """

    kind: str
    threshold: Optional[float] = None
    warmup: int = 30

    def __post_init__(self):
        if self.kind not in BEAM_DETECTORS:
            raise ValueError(f"unknown Beam detector {self.kind!r}: one of {', '.join(BEAM_DETECTORS)}")

    def build(self, n_channels: int, sensor: str = "") -> BeamDetector:
        return BeamDetector(self.kind, n_channels, self.threshold, self.warmup)
