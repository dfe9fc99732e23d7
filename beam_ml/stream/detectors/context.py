"""beam_ml's context detector (`ContextDetector`, built from a `DetectorConfig`): one `ChannelDetector` per channel,
learning online, causally, from what it has seen:
  1. a scale per channel, which cuts values into bins (values outside it get bins of their own): the channel's known
     value range when the config has one for the sensor (`SensorPrior`), else the range of its first `warmup`
     readings;
  2. two raw scores in [0, 1] per reading: how unexpected the bin is after the previous `order` bins at this time of
     day (a variable-order sequence memory, backing off to shorter contexts and to contexts without the time of
     day), and how far it is from what this time of day usually reads (a time-of-day profile: the distance from the
     bucket's median bin in units of its spread, the same scale at a quiet night and a busy day);
  3. Numenta's anomaly likelihood on each raw score: a Gaussian fitted to the recent history of its short-term
     average (longer for the profile, whose anomalies last hours); the score is the log-scaled probability that the
     current average is not from that Gaussian;
  4. a reading outside the range seen so far (by more than `range_tolerance` of it) scores 1.
The channel's score is the larger of the two likelihoods (or 1), the window's score the largest over its new
readings and channels. A sensor's `SensorPrior` may also set how many readings its likelihoods learn over. Scores are
in [0, 1]. The classes hold plain picklable state and no Beam, so they can be tested alone.
"""
from __future__ import annotations

import collections
import dataclasses
import math
from typing import Mapping, Optional, Sequence

import numpy as np

from beam_ml.stream.detectors.base import DetectorSpec, WindowDetector

DAY_SECONDS = 86400.0


@dataclasses.dataclass(frozen=True)
class LikelihoodConfig:
    """Numenta's anomaly likelihood: no estimate during the first `learning_period + estimation_samples` scores;
    then the mean and variance of the `averaging_window`-score moving average over the last `history` scores
    (leaving out the learning period), re-estimated every `reestimation_period` scores."""

    learning_period: int = 288
    estimation_samples: int = 100
    history: int = 8640
    reestimation_period: int = 100
    averaging_window: int = 10

    def __post_init__(self):
        for name in ("learning_period", "estimation_samples", "history", "reestimation_period", "averaging_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def over(cls, readings: int) -> "LikelihoodConfig":
        """Learning spread over the first `readings` (at least 2): half to let the raw scores settle, half to
        estimate their distribution, as Numenta's HTM detector ties both to NAB's probationary period."""
        if readings < 2:
            raise ValueError(f"readings must be >= 2, got {readings}")
        return cls(learning_period=readings // 2, estimation_samples=readings - readings // 2)


@dataclasses.dataclass(frozen=True)
class SensorPrior:
    """What is known about one sensor before its first reading.

    Args:
      ranges: each channel's (low, high) value range, e.g. from the sensor's datasheet (NAB's detector API gives
        every detector the file's minimum and maximum, `inputMin`/`inputMax`). The channel's bins span it from the
        first reading, instead of the range of its first `warmup` readings. Empty, or None for a channel: learnt
        from the warm-up.
      learning_readings: readings the anomaly likelihood learns over before it scores (`LikelihoodConfig.over`;
        NAB gives detectors the probationary period, 15% of the file). 0: the config's `likelihood`.

    Example::

        DetectorConfig(sensors={"pump-7": SensorPrior(ranges=((0.0, 10.0), (-40.0, 125.0)))})
    """

    ranges: tuple[Optional[tuple[float, float]], ...] = ()
    learning_readings: int = 0

    def __post_init__(self):
        for low, high in filter(None, self.ranges):
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ValueError(f"a range must be finite with low <= high, got ({low}, {high})")
        if self.learning_readings and self.learning_readings < 2:
            raise ValueError(f"learning_readings must be 0 or >= 2, got {self.learning_readings}")


@dataclasses.dataclass(frozen=True)
class DetectorConfig(DetectorSpec):
    """One configuration of `ContextDetector` (the same for every sensor): the spec that builds one per sensor.

    Args:
      warmup: readings per channel that set its scale (value range); no scores before.
      bins: bins over the warm-up range for the sequence memory.
      order: the longest context (previous bins) of the sequence memory.
      context_hours: width of the time-of-day bucket added to sequence contexts (0: no time of day).
      season_bins: bins over the warm-up range for the time-of-day profile.
      season_hours: width of the time-of-day profile's buckets (0: no profile).
      season_min_count: readings a time-of-day bucket needs before it scores.
      season_spread: a reading this many median absolute deviations (at least one bin each) from its bucket's median
        bin scores 1 in the profile (less, in proportion, nearer).
      season_averaging: readings the profile's likelihood averages its raw scores over (the sequence memory's:
        `likelihood.averaging_window`).
      weekly: the profile learns each day of the week, and weekdays apart from weekends, where the series is long
        enough (`TimeOfDayProfile`).
      tolerance: how much a neighbouring bin counts as the predicted one in the sequence memory (0 to 1).
      range_tolerance: a reading further than this fraction of the range seen so far outside it scores 1.
      likelihood: the anomaly likelihood's windows.
      threshold: a window scoring at least this raises an alert (0.5, Numenta's usual cut on its log scale, is
        within 0.02 of the best threshold for NAB's standard profile on the shared files).
      name: the detector's name in scores and alerts.
      sensors: `SensorPrior`s by sensor id, for sensors known in advance; others learn everything from their data.
    """

    warmup: int = 150
    bins: int = 40
    order: int = 4
    context_hours: float = 3.0
    season_bins: int = 20
    season_hours: float = 2.0
    season_min_count: int = 20
    season_spread: float = 5.0
    season_averaging: int = 20
    weekly: bool = True
    tolerance: float = 1.0
    range_tolerance: float = 0.05
    likelihood: LikelihoodConfig = LikelihoodConfig()
    threshold: float = 0.5
    name: str = "contextLikelihood"
    sensors: Mapping[str, SensorPrior] = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self):
        if self.warmup < 2:
            raise ValueError(f"warmup must be >= 2, got {self.warmup}")
        if self.bins < 1 or self.season_bins < 1:
            raise ValueError(f"bins and season_bins must be >= 1, got {self.bins} and {self.season_bins}")
        if self.order < 0:
            raise ValueError(f"order must be >= 0, got {self.order}")
        if not (0 <= self.context_hours <= 24 and 0 <= self.season_hours <= 24):
            raise ValueError("context_hours and season_hours must be in [0, 24]")
        if self.season_min_count < 1 or self.season_averaging < 1:
            raise ValueError(f"season_min_count and season_averaging must be >= 1, got {self.season_min_count} and "
                             f"{self.season_averaging}")
        if not self.season_spread > 0:
            raise ValueError(f"season_spread must be > 0, got {self.season_spread}")
        if not 0 <= self.tolerance <= 1:
            raise ValueError(f"tolerance must be in [0, 1], got {self.tolerance}")
        if self.range_tolerance < 0:
            raise ValueError(f"range_tolerance must be >= 0, got {self.range_tolerance}")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if not self.name:
            raise ValueError("name must not be empty")
        if not all(isinstance(p, SensorPrior) for p in self.sensors.values()):
            raise ValueError("sensors must map sensor ids to SensorPriors")

    def build(self, n_channels: int, sensor: str = "") -> "ContextDetector":
        return ContextDetector(self, n_channels, self.sensors.get(sensor, SensorPrior()))


def tail_probability(x: float, mean: float, stdev: float) -> float:
    """P(X >= x) for X ~ N(mean, stdev²); 0.5 for x at or below the mean (only higher raw scores are anomalous)."""
    if x <= mean:
        return 0.5
    return 0.5 * math.erfc((x - mean) / (stdev * math.sqrt(2.0)))


def log_likelihood(likelihood: float) -> float:
    """Numenta's log scale: 0.5 ↦ 0.03, 0.99999 ↦ 0.5, 1 ↦ 1."""
    return math.log(1.0000000001 - likelihood) / math.log(1.0 - 0.9999999999)


class AnomalyLikelihood:
    """How unlikely the recent raw scores are, given their history (Ahmad et al. 2017, "Unsupervised real-time
    anomaly detection for streaming data"): 1 − the Gaussian tail probability of the short-term average of raw
    scores. A run of extreme tail probabilities counts in full only once (the later ones as 1e-3), as Numenta does.

    Example::

        likelihood = AnomalyLikelihood(LikelihoodConfig())
        scores = [likelihood.update(raw) for raw in raw_scores]
    """

    MIN_MEAN, MIN_VARIANCE = 0.03, 0.0003
    RED, YELLOW = 1e-5, 1e-3

    def __init__(self, config: LikelihoodConfig):
        self._config = config
        self._recent: collections.deque = collections.deque(maxlen=config.averaging_window)
        self._averages = np.zeros(config.history)  # ring buffer of moving averages
        self._count = 0
        self._mean = self._stdev = None
        self._since_estimate = 0
        self._previous_red = False

    def update(self, raw: float) -> float:
        config = self._config
        self._recent.append(raw)
        average = sum(self._recent) / len(self._recent)
        self._averages[self._count % config.history] = average
        self._count += 1
        if self._count <= config.learning_period + config.estimation_samples:
            return 0.5
        if self._mean is None or self._since_estimate >= config.reestimation_period:
            self._estimate()
        self._since_estimate += 1
        tail = tail_probability(average, self._mean, self._stdev)
        red = tail <= self.RED
        if red and self._previous_red:
            tail = self.YELLOW
        self._previous_red = red
        return 1.0 - tail

    def _estimate(self) -> None:
        config = self._config
        kept = min(self._count - config.learning_period, config.history)
        indices = np.arange(self._count - kept, self._count) % config.history
        history = self._averages[indices]
        self._mean = max(float(history.mean()), self.MIN_MEAN)
        self._stdev = math.sqrt(max(float(history.var()), self.MIN_VARIANCE))
        self._since_estimate = 0


class CountTable:
    """Counts of integer keys in two sorted numpy arrays: cheap to pickle (Beam state) at any size."""

    def __init__(self):
        self._keys = np.empty(0, dtype=np.int64)
        self._counts = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, keys: np.ndarray) -> np.ndarray:
        """The counts of `keys` (0 for keys never added)."""
        if not len(self._keys):
            return np.zeros(len(keys), dtype=np.int64)
        at = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        return np.where(self._keys[at] == keys, self._counts[at], 0)

    def add(self, keys: np.ndarray) -> None:
        """Counts each of `keys` once more."""
        keys, times = np.unique(keys, return_counts=True)
        at = np.searchsorted(self._keys, keys)
        found = np.zeros(len(keys), dtype=bool)
        if len(self._keys):
            found = self._keys[np.minimum(at, len(self._keys) - 1)] == keys
        self._counts[at[found]] += times[found]
        new = ~found
        self._keys = np.insert(self._keys, at[new], keys[new])
        self._counts = np.insert(self._counts, at[new], times[new])


def _key(*parts: int) -> int:
    """A 64-bit key for a tuple of ints, the same in every process (Python's hash of a tuple of ints is). The ints
    are first mapped one-to-one onto naturals, since CPython hashes -1 like -2."""
    return hash(tuple(2 * p if p >= 0 else -2 * p - 1 for p in parts))


class SequenceMemory:
    """How unexpected a bin is after the previous bins: counts of (context, next bin) for every context length up to
    `order`, with and without the time-of-day bucket. The longest context seen before decides (the time-of-day one
    first); the raw score is 1 − the share of that context's successors that were this bin (neighbouring bins count
    `tolerance`). A context never seen at any length scores 1."""

    def __init__(self, order: int, tolerance: float, bucket_seconds: float):
        self._order, self._tolerance, self._bucket = order, tolerance, bucket_seconds
        self._history: collections.deque = collections.deque(maxlen=max(order, 1))
        self._counts = CountTable()

    def _contexts(self, timestamp: float) -> list[tuple[int, ...]]:
        """Contexts to try, most specific first: (with time of day?, bucket, length, bins...)."""
        history = tuple(self._history)[-self._order:] if self._order else ()
        buckets = [(1, int((timestamp % DAY_SECONDS) // self._bucket))] if self._bucket else []
        buckets.append((0, -1))
        return [(timed, bucket, k) + history[len(history) - k:]
                for timed, bucket in buckets for k in range(len(history), -1, -1)]

    def update(self, bin_: int, timestamp: float) -> float:
        contexts = self._contexts(timestamp)
        totals_keys = np.array([_key(*c) for c in contexts], dtype=np.int64)
        next_keys = np.array([_key(*c, b) for c in contexts for b in (bin_, bin_ - 1, bin_ + 1)], dtype=np.int64)
        found = self._counts.get(np.concatenate([totals_keys, next_keys]))
        totals, nexts = found[:len(contexts)], found[len(contexts):].reshape(len(contexts), 3)
        raw = 1.0
        for i, total in enumerate(totals):
            if total > 0:
                seen = nexts[i, 0] + self._tolerance * (nexts[i, 1] + nexts[i, 2])
                raw = 1.0 - min(1.0, seen / total)
                break
        self._counts.add(np.concatenate([totals_keys, next_keys[0::3]]))
        self._history.append(bin_)
        return raw


def day_kinds(timestamp: float) -> tuple[int, int, int]:
    """(day of week, 0 Monday to 6 Sunday; 7 for a weekday, 8 for Saturday or Sunday; the week, counted from Monday
    1969-12-29) of a unix time in UTC."""
    days = int(timestamp // DAY_SECONDS) + 3  # 1970-01-01 was a Thursday
    return days % 7, 8 if days % 7 >= 5 else 7, days // 7


class TimeOfDayProfile:
    """How far a bin is from what this time of day usually reads: its distance from the median bin of the readings
    seen in the same bucket, in units of `spread` × their median absolute deviation (at least one bin), capped at 1;
    0 until the bucket has `min_count` readings. A robust z-score per time of day, so a busy daytime bucket and a
    quiet night one score alike when they read as usual.

    With `weekly`, the readings of the same bucket on the same day of the week are the profile once they come from
    `WEEKLY_MIN_WEEKS` earlier weeks (and are `min_count`), else those of the same kind of day (weekday or weekend)
    if they do, else those of every day: a week is learnt where the series is long enough, and nothing is lost where
    it is not.
    """

    WEEKLY_MIN_WEEKS = 2  # a pattern seen in one week could be that week's

    def __init__(self, bucket_seconds: float, spread: float, min_count: int, weekly: bool = False):
        self._bucket, self._spread, self._min_count, self._weekly = bucket_seconds, spread, min_count, weekly
        self._counts: dict[tuple[int, int], dict[int, int]] = {}
        self._weeks: dict[tuple[int, int], tuple[int, int]] = {}  # weekly profile → (last week it read, weeks before)

    def update(self, bin_: int, timestamp: float) -> float:
        bucket = int((timestamp % DAY_SECONDS) // self._bucket)
        day, kind, week = day_kinds(timestamp)
        keys = [(day, bucket), (kind, bucket), (-1, bucket)] if self._weekly else [(-1, bucket)]
        for key in keys[:-1]:
            last, before = self._weeks.get(key, (week, 0))
            self._weeks[key] = (week, before + (last != week))
        profiles = [self._counts.setdefault(key, {}) for key in keys]
        raw = 0.0
        for key, counts in zip(keys, profiles):  # the most specific one with enough readings
            total = sum(counts.values())
            enough_weeks = key[0] < 0 or self._weeks[key][1] >= self.WEEKLY_MIN_WEEKS
            if total >= self._min_count and enough_weeks:
                bins = np.array(sorted(counts))
                weights = np.array([counts[b] for b in bins])
                median = bins[np.searchsorted(np.cumsum(weights), total / 2)]
                deviations = np.abs(bins - median)
                order = np.argsort(deviations, kind="stable")
                mad = deviations[order][np.searchsorted(np.cumsum(weights[order]), total / 2)]
                raw = min(1.0, abs(bin_ - median) / (self._spread * max(mad, 1)))
                break
        for counts in profiles:
            counts[bin_] = counts.get(bin_, 0) + 1
        return raw


class RangeGuard:
    """True for a value further outside the range seen so far than `tolerance` × that range."""

    def __init__(self, tolerance: float):
        self._tolerance = tolerance
        self._low = self._high = None

    def update(self, value: float) -> bool:
        outside = False
        if self._low is not None and self._high > self._low:
            margin = (self._high - self._low) * self._tolerance
            outside = value > self._high + margin or value < self._low - margin
        self._low = value if self._low is None else min(self._low, value)
        self._high = value if self._high is None else max(self._high, value)
        return outside


class ChannelDetector:
    """One channel's online detector (see the module docstring). `update` scores a reading, then learns it.

    Example::

        detector = ChannelDetector(DetectorConfig())
        scores = [detector.update(t, x) for t, x in zip(timestamps, values)]
    """

    def __init__(self, config: DetectorConfig, value_range: Optional[tuple[float, float]] = None,
                 learning_readings: int = 0):
        self._config = config
        self._warmup: Optional[list] = None if value_range else []
        self._low = self._width = 0.0
        if value_range:
            self._set_scale(*value_range)
        self._range = RangeGuard(config.range_tolerance)
        self._sequence = SequenceMemory(config.order, config.tolerance, config.context_hours * 3600)
        likelihood = LikelihoodConfig.over(learning_readings) if learning_readings else config.likelihood
        self._sequence_likelihood = AnomalyLikelihood(likelihood)
        self._season = (TimeOfDayProfile(config.season_hours * 3600, config.season_spread, config.season_min_count,
                                         config.weekly) if config.season_hours else None)
        self._season_likelihood = AnomalyLikelihood(dataclasses.replace(
            likelihood, averaging_window=config.season_averaging))

    def _set_scale(self, low: float, high: float) -> None:
        self._low, self._width = low, (high - low) or max(abs(high), 1.0)

    def _bin(self, value: float, bins: int) -> int:
        return int(math.floor((value - self._low) / self._width * bins))

    def update(self, timestamp: float, value: float) -> float:
        outside = self._range.update(value)
        if self._warmup is not None:
            self._warmup.append(value)
            if len(self._warmup) < self._config.warmup:
                return 0.0
            self._set_scale(min(self._warmup), max(self._warmup))
            self._warmup = None
            return 0.0
        raw = self._sequence.update(self._bin(value, self._config.bins), timestamp)
        score = log_likelihood(self._sequence_likelihood.update(raw))
        if self._season is not None:
            seasonal = self._season.update(self._bin(value, self._config.season_bins), timestamp)
            score = max(score, log_likelihood(self._season_likelihood.update(seasonal)))
        return 1.0 if outside else score


class ContextDetector(WindowDetector):
    """`WindowDetector` with a `ChannelDetector` per channel (scores in [0, 1]).

    Example::

        detector = ContextDetector(DetectorConfig(), n_channels=2)
        for window in windows_of_one_sensor:  # in event-time order
            score, channel_scores = detector.score_window(window)
    """

    def __init__(self, config: DetectorConfig, n_channels: int, prior: SensorPrior = SensorPrior()):
        super().__init__(n_channels)
        if prior.ranges and len(prior.ranges) != n_channels:
            raise ValueError(f"the sensor's prior has {len(prior.ranges)} ranges for {n_channels} channels")
        self.name, self.threshold = config.name, config.threshold
        ranges = prior.ranges or (None,) * n_channels
        self._channels = [ChannelDetector(config, r, prior.learning_readings) for r in ranges]

    def update(self, timestamp: float, values: Sequence[float]) -> tuple[float, ...]:
        return tuple(channel.update(timestamp, float(v)) for channel, v in zip(self._channels, values))
