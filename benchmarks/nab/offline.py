"""NAB scores of a detector computed outside Beam, in a plain loop, giving each row the score the streaming replay
(`benchmarks.nab.replay`) gives it: for trying detector settings in seconds instead of the replay's tens of minutes.
A test keeps the two equal row for row on a small corpus; report figures from the replay (`python -m benchmarks.nab`).

    python -m benchmarks.nab.offline [--data ../shared/data/nab/data]
                                     [--windows ../shared/data/nab/combined_windows.json] [--no_priors]

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

import numpy as np

from beam_ml.stream.detectors.base import DetectorSpec
from beam_ml.stream.detectors.context import DetectorConfig
from benchmarks.nab.replay import (
    Series,
    _datetime64,
    discover,
    print_categories,
    read_series,
    read_windows,
    score_corpus,
    with_nab_priors,
)


def offline_scores(series: Series, spec: DetectorSpec, window_length: int = 8, sensor: str = "") -> np.ndarray:
    """Each row's score, as the streaming replay scores it (see the module docstring), by `spec`'s detector for
    `sensor`."""
    detector = spec.build(1, sensor)
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


def main(argv=None) -> int:
    from benchmarks.nab.__main__ import SHARED
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(SHARED, "data"))
    parser.add_argument("--windows", default=os.path.join(SHARED, "combined_windows.json"))
    parser.add_argument("--window_length", type=int, default=8)
    parser.add_argument("--no_priors", action="store_true",
                        help="do not tell the detector each file's range and probation (NAB's detector API does)")
    args = parser.parse_args(argv)
    files, windows = discover(args.data), read_windows(args.windows)
    start = time.perf_counter()
    series = {f.relative: read_series(f.path) for f in files}
    spec = DetectorConfig() if args.no_priors else with_nab_priors(DetectorConfig(), series)
    scores = {key: offline_scores(s, spec, args.window_length, key) for key, s in series.items()}
    times = {key: np.array([_datetime64(t) for t in s.timestamps]) for key, s in series.items()}
    table = score_corpus(files, times, scores, windows)
    print(f"{spec.name} (offline, {len(files)} files, {time.perf_counter() - start:.1f} s): "
          + ", ".join(f"{profile} {score.score:.1f}" for profile, score in table.items()))
    print_categories({spec.name: table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
