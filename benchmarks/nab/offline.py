"""NAB scores of a detector computed outside Beam, in a plain loop, giving each row the score the streaming replay
(`benchmarks.nab.replay`) gives it: for trying detector settings in seconds instead of the replay's tens of minutes.
A test keeps the two equal row for row on a small corpus; report figures from the replay (`python -m benchmarks.nab`).

    python -m benchmarks.nab.offline [--data ../shared/data/nab/data] [--windows ../shared/data/nab/combined_windows.json]

The loop mirrors `WindowPerSensor(length, stride=1)` → `ScoreWindows` for files whose clock never goes back (NAB's
repeat a timestamp at most): a reading at a time its sensor already passed is set apart and scores 0; the first full
window scores its readings together (its last row gets the largest), the rows before it 0; every later reading is
scored as it comes.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Mapping, Sequence

import numpy as np

from beam_ml.stream.detectors.base import DetectorSpec
from beam_ml.stream.detectors.context import DetectorConfig
from benchmarks.nab.replay import DataFile, Series, _datetime64, discover, read_series, read_windows
from benchmarks.nab.scoring import PROFILES, label_file, normalised, sweep


def offline_scores(series: Series, spec: DetectorSpec, window_length: int = 8) -> np.ndarray:
    """Each row's score, as the streaming replay scores it (see the module docstring)."""
    detector = spec.build(1)
    scores = np.zeros(len(series.values))
    kept = 0  # readings the sensor took
    last, first_window = None, 0.0
    for row, (t, value) in enumerate(zip(series.seconds, series.values)):
        if last is not None and t <= last:
            continue  # late or a duplicate: set apart, scores 0
        last, kept = t, kept + 1
        score = max(detector.update(float(t), (float(value),)))
        if kept <= window_length:  # the first window: scored together, on its last row
            first_window = max(first_window, score)
            score = first_window if kept == window_length else 0.0
        scores[row] = score
    return scores


def nab_scores(files: Sequence[DataFile], scores: Mapping[str, np.ndarray],
               windows: Mapping[str, Sequence[tuple[str, str]]]) -> dict[str, float]:
    """NAB's normalised score per profile of per-row scores {file: scores}."""
    out = {}
    times = {f.relative: np.array([_datetime64(t) for t in read_series(f.path).timestamps]) for f in files}
    for name, profile in PROFILES.items():
        pairs = []
        for f in files:
            labelled, scorable = label_file(f.relative, times[f.relative], [
                (_datetime64(a), _datetime64(b)) for a, b in windows.get(f.relative, [])], profile)
            pairs.append((labelled, scores[f.relative][scorable]))
        _, raw = sweep(pairs, profile)
        out[name] = normalised(raw, [labelled for labelled, _ in pairs], profile)
    return out


def main(argv=None) -> int:
    from benchmarks.nab.__main__ import SHARED
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(SHARED, "data"))
    parser.add_argument("--windows", default=os.path.join(SHARED, "combined_windows.json"))
    parser.add_argument("--window_length", type=int, default=8)
    args = parser.parse_args(argv)
    files, windows, spec = discover(args.data), read_windows(args.windows), DetectorConfig()
    start = time.perf_counter()
    scores = {f.relative: offline_scores(read_series(f.path), spec, args.window_length) for f in files}
    table = nab_scores(files, scores, windows)
    print(f"{spec.name} (offline, {len(files)} files, {time.perf_counter() - start:.1f} s): "
          + ", ".join(f"{profile} {score:.1f}" for profile, score in table.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
