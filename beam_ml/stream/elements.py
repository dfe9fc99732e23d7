"""The streaming job's element types besides readings and windows (`beam_ml.core.windowing`): a detector's verdict on
a window (`ScoredWindow`), an alert (`Alert`, what every alert sink writes) and an incident (`Incident`: a sensor's
run of alerts).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from beam_ml.core.windowing import SensorWindow


@dataclasses.dataclass(frozen=True)
class Alert:
    """A window whose anomaly score reached its threshold: what every alert sink writes.

    `detector` names what scored it (a model: its name; an online detector: e.g. "zscore"); `model_version` is the
    pushed model version directory (None for online detectors); `top_channels` lists the channels that contributed
    most to the score, largest first."""

    sensor_id: str
    window_start: float
    window_end: float
    score: float
    threshold: float
    detector: str
    model_version: Optional[str] = None
    top_channels: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Incident:
    """A sensor's run of alerts, as an operator acts on it: alerts whose windows follow each other within a gap are
    one incident. `event` is `open` (its first alert), `update` (a higher peak, at most one per rate-limit period) or
    `close` (no alert for the gap); `start` is the first alert's window start, `end` the latest alert's window end,
    `peak_score` with its `threshold`, `detector` and `top_channels` the highest-scoring alert's, `alerts` how many so
    far. `incident_id` is the same in every event of one incident."""

    incident_id: str
    event: str
    sensor_id: str
    start: float
    end: float
    peak_score: float
    threshold: float
    detector: str
    top_channels: tuple[str, ...]
    alerts: int


@dataclasses.dataclass(frozen=True)
class ScoredWindow:
    """One detector's verdict on one window: an alert when `score >= threshold` (both on the detector's own scale).
    `top_channels` names the channels at or over the threshold, largest first (at least the largest);
    `channel_scores` holds each channel's score in the window's channel order; `model_version` is the pushed model
    version that scored it (None for online detectors)."""

    sensor_id: str
    start: float
    end: float
    score: float
    threshold: float
    detector: str
    top_channels: tuple[str, ...] = ()
    channel_scores: tuple[float, ...] = ()
    model_version: Optional[str] = None

    @property
    def alerting(self) -> bool:
        return self.score >= self.threshold


def top_channels(channel_scores: Sequence[float], channels: Sequence[str], threshold: float) -> tuple[str, ...]:
    """The channels scoring at least `threshold`, largest first; the largest alone if none does."""
    names = channels or [str(i) for i in range(len(channel_scores))]
    ranked = sorted(range(len(channel_scores)), key=lambda i: -channel_scores[i])
    return tuple(names[i] for i in ranked if channel_scores[i] >= threshold) or tuple(names[i] for i in ranked[:1])


def scored_window(window: SensorWindow, score: float, threshold: float, channel_scores: Sequence[float],
                  detector: str, channels: Sequence[str], model_version: Optional[str] = None) -> ScoredWindow:
    return ScoredWindow(window.sensor_id, window.start, window.end, float(score), float(threshold), detector,
                        top_channels(channel_scores, channels, threshold), tuple(float(s) for s in channel_scores),
                        model_version)
