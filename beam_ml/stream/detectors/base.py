"""The interface of an online detector: `WindowDetector` (one sensor's detector over its windows) and
`DetectorSpec` (a picklable description that builds one per sensor). A new algorithm implements both, in a file of
its own, and is named in `beam_ml.stream.detectors.catalog`.
"""
from __future__ import annotations

import abc
from typing import Optional, Sequence

from beam_ml.core.windowing import SensorWindow


class WindowDetector(abc.ABC):
    """A sensor's online detector over its windows: each window scores its readings newer than the last one scored
    (all of them for the first window), the score being the largest over those readings and channels. Subclasses
    give `update` (each channel's score for one reading, then learn it), `name` and `threshold` (an alert is a
    score at or over it, on the detector's own scale)."""

    name: str
    threshold: float

    def __init__(self, n_channels: int):
        if n_channels < 1:
            raise ValueError(f"n_channels must be >= 1, got {n_channels}")
        self.n_channels = n_channels
        self._last: Optional[float] = None

    @abc.abstractmethod
    def update(self, timestamp: float, values: Sequence[float]) -> tuple[float, ...]:
        """Each channel's score for one reading (channels in window order); then the reading is learnt."""

    def score_window(self, window: SensorWindow) -> tuple[float, tuple[float, ...]]:
        """(score, per-channel scores) over the window's new readings; (0, zeros) if it has none."""
        best = (0.0,) * self.n_channels
        for timestamp, values in zip(window.timestamps, window.values):
            if self._last is None or timestamp > self._last:
                if len(values) != self.n_channels:
                    raise ValueError(f"expected {self.n_channels} channels, got {len(values)}")
                self._last = timestamp
                best = tuple(max(a, b) for a, b in zip(best, self.update(timestamp, values)))
        return max(best), best


class DetectorSpec(abc.ABC):
    """What an online detector is, the same for every sensor: picklable, so it travels in the graph; each sensor
    gets its own detector from `build` when its first window arrives."""

    @abc.abstractmethod
    def build(self, n_channels: int, sensor: str = "") -> WindowDetector:
        """A new detector for `sensor`, with `n_channels` channels (ValueError if it cannot be one). A spec may know
        things about particular sensors (e.g. their value ranges); other sensors, and "", get its defaults."""
