"""NAB scoring, implemented here from the benchmark's published rules (Lavin & Ahmad 2015, NAB v1.1 profiles).

Per data file: the first 15% of rows (at most 750) are a probation period and are not scored. A detection is a row
whose anomaly score is at or above the threshold. Inside a labelled window, the earliest detection counts, weighted
by a scaled sigmoid of its position (the window's first row earns `tp_weight`, later rows less); a window without
a detection costs `fn_weight`. A detection outside every window costs up to `fp_weight`, scaled by its distance
after the previous window (before the first window: the full cost). One threshold per detector and profile is chosen
for the whole corpus by sweeping every distinct score value, and the corpus total is normalised so that the null
detector (no detections) scores 0 and the perfect detector (a detection at the start of every window) 100.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

import numpy as np

PROBATION_FRACTION = 0.15
PROBATION_MAX_ROWS = 750  # 15% of 5000


@dataclasses.dataclass(frozen=True)
class Profile:
    tp_weight: float
    fp_weight: float
    fn_weight: float


PROFILES = {
    "standard": Profile(tp_weight=1.0, fp_weight=0.11, fn_weight=1.0),
    "reward_low_FP_rate": Profile(tp_weight=1.0, fp_weight=0.22, fn_weight=1.0),
    "reward_low_FN_rate": Profile(tp_weight=1.0, fp_weight=0.11, fn_weight=2.0),
}


def scaled_sigmoid(position: float) -> float:
    """+0.987 at a window's first row (position -1), 0 at its right edge (0), -1 from 3 window-lengths after."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probation_rows(n_rows: int) -> int:
    return int(min(math.floor(PROBATION_FRACTION * n_rows), PROBATION_MAX_ROWS))


@dataclasses.dataclass
class LabelledFile:
    """One data file's scorable rows: what a detection at each row would be worth, and its window (-1: none)."""

    name: str
    weights: np.ndarray  # sweep score of a detection at the row
    window: np.ndarray  # index of the row's window in this file, -1 outside windows
    n_windows: int  # windows with at least one scorable row


def label_file(name: str, timestamps: np.ndarray, windows: Sequence[tuple[np.datetime64, np.datetime64]],
               profile: Profile) -> tuple[LabelledFile, np.ndarray]:
    """The scorable rows of one file (`timestamps` ascending) and the mask selecting them from all rows."""
    n = len(timestamps)
    window_of = np.full(n, -1)
    for index, (start, end) in enumerate(sorted(windows)):
        window_of[(timestamps >= start) & (timestamps <= end)] = index
    weights = np.empty(n)
    max_tp = scaled_sigmoid(-1.0)
    previous_right, previous_width = None, None
    i = 0
    while i < n:
        if window_of[i] >= 0:  # a window's rows: i is its left edge
            right = i
            while right + 1 < n and window_of[right + 1] == window_of[i]:
                right += 1
            width = right - i + 1
            for row in range(i, right + 1):
                weights[row] = scaled_sigmoid(-(right - row + 1) / width) * profile.tp_weight / max_tp
            previous_right, previous_width, i = right, width, right + 1
            continue
        if previous_right is None:
            position = 3.0
        else:  # NAB divides by (width - 1); a one-row window would divide by zero, so it counts as far away
            position = (i - previous_right) / (previous_width - 1) if previous_width > 1 else 3.0
        weights[i] = scaled_sigmoid(position) * profile.fp_weight
        i += 1
    scorable = np.arange(n) >= probation_rows(n)
    kept_windows = window_of[scorable]
    return LabelledFile(name, weights[scorable], kept_windows, len(set(kept_windows[kept_windows >= 0]))), scorable


def raw_score(files: Iterable[tuple[LabelledFile, np.ndarray]], threshold: float, profile: Profile) -> float:
    """The corpus's raw score for `(file, anomaly scores of its scorable rows)` pairs at one threshold."""
    total = 0.0
    for labelled, scores in files:
        detected = scores >= threshold
        total += labelled.weights[detected & (labelled.window < 0)].sum()
        for window in np.unique(labelled.window[labelled.window >= 0]):
            hits = detected & (labelled.window == window)
            total += labelled.weights[hits].max() if hits.any() else -profile.fn_weight
    return float(total)


def sweep(files: Sequence[tuple[LabelledFile, np.ndarray]], profile: Profile) -> tuple[float, float]:
    """(threshold, raw score) maximising the corpus score over every distinct anomaly score value (lowering the
    threshold from above the highest score, one distinct value at a time); ties keep the highest threshold."""
    scores = np.concatenate([s for _, s in files]) if files else np.empty(0)
    weights = np.concatenate([f.weights for f, _ in files]) if files else np.empty(0)
    offsets = np.cumsum([0] + [f.window.max(initial=-1) + 1 for f, _ in files])
    windows = np.concatenate([np.where(f.window >= 0, f.window + offsets[k], -1)
                              for k, (f, _) in enumerate(files)]) if files else np.empty(0, dtype=int)
    best_tp = {int(w): -profile.fn_weight for w in np.unique(windows[windows >= 0])}
    total = sum(best_tp.values())
    best = (1.1, total)  # a threshold above every score: no detections
    order = np.argsort(-scores, kind="stable")
    for position, row in enumerate(order):
        window = int(windows[row])
        if window < 0:
            total += weights[row]
        elif weights[row] > best_tp[window]:
            total += weights[row] - best_tp[window]
            best_tp[window] = weights[row]
        is_last_of_value = position + 1 == len(order) or scores[order[position + 1]] != scores[row]
        if is_last_of_value and total > best[1]:
            best = (float(scores[row]), total)
    return best


def normalised(raw: float, files: Sequence[LabelledFile], profile: Profile) -> float:
    """100 × (raw − null) / (perfect − null) over the corpus."""
    n_windows = sum(f.n_windows for f in files)
    null, perfect = -profile.fn_weight * n_windows, profile.tp_weight * n_windows
    return 100.0 * (raw - null) / (perfect - null)
