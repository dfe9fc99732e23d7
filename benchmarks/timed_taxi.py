"""The taxi module (`transforms.taxi`) with its training timed: the e2e benchmark's user module, so that training's
share of time and memory can be told apart from the pipeline's. Its `run_fn` appends `{"start", "end"}` (the
system-wide monotonic clock, comparable across processes) to the file `$BEAM_ML_BENCH_TRAIN_TIMES` names."""
from __future__ import annotations

import json
import os
import time

from transforms import taxi
from transforms.taxi import preprocessing_fn  # noqa: F401  (the module contract)

TIMES_ENV = "BEAM_ML_BENCH_TRAIN_TIMES"


def run_fn(fn_args) -> None:
    start = time.monotonic()
    taxi.run_fn(fn_args)
    path = os.environ.get(TIMES_ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"start": start, "end": time.monotonic()}) + "\n")
