"""PCA T²+Q: a multivariate detector for a sensor whose channels move together (a machine's pressure, current and
flow). It learns the channels' joint normal behaviour from the sensor's first `fit_readings` readings (they score 0),
then scores each later reading online:
  1. each channel is centred on its fit mean and scaled by its fit spread, but never by less than `scale_floor` of
     its mean level (a channel near-constant while fitting, or quantized, would otherwise make every later wobble an
     outlier);
  2. principal components of the scaled fit readings, the fewest that explain `variance` of their variance;
  3. two statistics per reading: Hotelling's T² (how far along the components, in units of their spread) and Q, the
     squared prediction error (how far off the components: a broken correlation);
  4. each averaged over the last `smoothing` readings (causal), and divided by its threshold: the `quantile` of the
     same averaged statistic over the fit readings, times `margin`; Q's threshold is at least `q_floor` (a few quiet
     fit minutes would otherwise make a reading that leaves the plane by a fraction of a scale unit an outlier);
  5. slow drift (a machine warming up over hours) is followed: the centre moves towards each reading that does not
     alert, with time constant `follow_seconds`. Alerting readings are not learnt, so a fault keeps alerting; a
     lasting new operating point keeps alerting too, until the sensor is fitted anew.
The score is the larger of the two ratios, so the alert threshold is 1 (`alert_at` sets another). Each channel's
share of the larger statistic (its squared residual for Q, its term of T²) says which channels moved: the channel
scores are the score times each share over the largest share.
The classes hold plain picklable state and no Beam, so they can be tested alone.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Optional, Sequence

import numpy as np

from beam_ml.stream.detectors.base import DetectorSpec, WindowDetector


@dataclasses.dataclass(frozen=True)
class PcaModel:
    """What the fit readings give: centre, scale, components (columns), their variances, and the thresholds of the
    averaged T² and Q."""

    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    t2_threshold: float
    q_threshold: float

    def statistics(self, values: np.ndarray, centre: Optional[np.ndarray] = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(T², Q, per-channel T² terms, per-channel squared residuals) of readings [rows, channels], centred on
        `centre` (default: the fit mean)."""
        z = (values - (self.mean if centre is None else centre)) / self.scale
        projected = z @ self.components
        residual = z - projected @ self.components.T
        t2_terms = z * ((projected / self.variances) @ self.components.T)  # sums to T² per row
        return (projected ** 2 / self.variances).sum(axis=1), (residual ** 2).sum(axis=1), t2_terms, residual ** 2


def fit_pca(values: np.ndarray, spec: "PcaSpec") -> PcaModel:
    """The `PcaModel` of fit readings [rows, channels] (see the module docstring)."""
    mean = values.mean(axis=0)
    scale = np.maximum(values.std(axis=0), spec.scale_floor * np.abs(mean))
    scale = np.where(scale > 0, scale, 1.0)  # a channel constant at 0
    z = (values - mean) / scale
    _, singular, vt = np.linalg.svd(z, full_matrices=False)
    variances = singular ** 2 / max(len(z) - 1, 1)
    share = np.cumsum(variances) / variances.sum() if variances.sum() > 0 else np.ones_like(variances)
    kept = int(min(np.searchsorted(share, spec.variance) + 1, len(variances)))
    components, kept_variances = vt[:kept].T, np.maximum(variances[:kept], 1e-12)
    model = PcaModel(mean, scale, components, kept_variances, 1.0, 1.0)
    t2, q, _, _ = model.statistics(values)
    thresholds = [float(np.quantile(_trailing_mean(s, spec.smoothing), spec.quantile)) * spec.margin for s in (t2, q)]
    return dataclasses.replace(model, t2_threshold=max(thresholds[0], 1e-12),
                               q_threshold=max(thresholds[1], spec.q_floor, 1e-12))


def _trailing_mean(values: np.ndarray, length: int) -> np.ndarray:
    """Each value averaged with up to `length - 1` before it."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    starts = np.maximum(np.arange(1, len(values) + 1) - length, 0)
    return (sums[1:] - sums[starts]) / (np.arange(1, len(values) + 1) - starts)


class PcaDetector(WindowDetector):
    """One sensor's PCA T²+Q detector (see the module docstring).

    Example::

        detector = PcaSpec().build(n_channels=8)
        score, channel_scores = detector.score_window(window)   # 0 until 400 readings were seen
    """

    def __init__(self, spec: "PcaSpec", n_channels: int):
        super().__init__(n_channels)
        self.name, self.threshold = spec.name, spec.alert_at
        self._spec = spec
        self._fit_rows: list[Sequence[float]] = []
        self.model: Optional[PcaModel] = None
        self._centre: Optional[np.ndarray] = None
        self._last_time = 0.0
        self._recent: collections.deque = collections.deque(maxlen=spec.smoothing)  # (T², Q, terms, residuals)

    def update(self, timestamp: float, values: Sequence[float]) -> tuple[float, ...]:
        if self.model is None:
            self._fit_rows.append(tuple(float(v) for v in values))
            if len(self._fit_rows) == self._spec.fit_readings:
                fit = np.array(self._fit_rows)
                self.model = fit_pca(fit, self._spec)
                self._centre = self.model.mean
                t2, q, terms, residuals = self.model.statistics(fit[-self._spec.smoothing:])
                self._recent.extend(zip(t2, q, terms, residuals))
                self._fit_rows = []
            self._last_time = timestamp
            return (0.0,) * self.n_channels
        reading = np.array(values, dtype=float)
        (t2,), (q,), (terms,), (residuals,) = self.model.statistics(reading[None, :], self._centre)
        self._recent.append((t2, q, terms, residuals))
        t2_ratio = np.mean([r[0] for r in self._recent]) / self.model.t2_threshold
        q_ratio = np.mean([r[1] for r in self._recent]) / self.model.q_threshold
        score = float(max(t2_ratio, q_ratio))
        if score < self.threshold and self._spec.follow_seconds:
            weight = 1.0 - np.exp(-max(timestamp - self._last_time, 0.0) / self._spec.follow_seconds)
            self._centre = self._centre + weight * (reading - self._centre)
        self._last_time = timestamp
        shares = np.clip(np.mean([r[3] if q_ratio >= t2_ratio else r[2] for r in self._recent], axis=0), 0, None)
        if shares.max() <= 0:
            return (score,) * self.n_channels
        return tuple(float(score * s / shares.max()) for s in shares)


@dataclasses.dataclass(frozen=True)
class PcaSpec(DetectorSpec):
    """A `PcaDetector` per sensor (see the module docstring for the parameters).

    Example::

        scores = windows | ScoreWindows(PcaSpec(fit_readings=400), channels=CHANNELS)
    """

    fit_readings: int = 400
    name: str = "pca"
    variance: float = 0.95
    quantile: float = 0.99
    margin: float = 1.5
    smoothing: int = 30
    scale_floor: float = 0.05
    q_floor: float = 0.3
    follow_seconds: float = 300.0
    alert_at: float = 1.0

    def __post_init__(self):
        if self.fit_readings < 2 or not 0 < self.variance <= 1 or not 0 < self.quantile < 1:
            raise ValueError("fit_readings must be >= 2, variance in (0, 1], quantile in (0, 1)")
        if self.margin <= 0 or self.smoothing < 1 or self.scale_floor < 0 or not self.alert_at > 0:
            raise ValueError("margin and alert_at must be > 0, smoothing >= 1, scale_floor >= 0")
        if self.q_floor < 0 or self.follow_seconds < 0:
            raise ValueError("q_floor and follow_seconds must be >= 0 (follow_seconds 0: a fixed centre)")

    def build(self, n_channels: int, sensor: str = "") -> PcaDetector:
        return PcaDetector(self, n_channels)
