"""Infra validation (TFX InfraValidator's job): before a model is pushed, a fresh process loads it as TF Serving
would and answers its warm-up requests (`beam_ml.model.serving`); a model that does not load, or fails or answers
with non-finite numbers, is not pushed. The process records how long loading took, each request's latency and its
peak memory.

    python -m beam_ml.model.infra MODEL_DIR     # prints the result as JSON; exit 0 if the model is servable

A fresh process, not the training worker's: what TF Serving gets is the directory alone, without the Python objects
and custom code that training had loaded. This checks the model against TensorFlow's own runtime in this
environment; a real `tensorflow_model_server` binary is a different build, which README's "Serving" section says how
to check against.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from typing import Optional, Sequence

import apache_beam as beam

from beam_ml.core.redact import clipped

VALIDATION_TIMEOUT_SECONDS = 600


def validate_here(model_dir: str) -> dict:
    """Loads `model_dir` in this process and answers its warm-up requests: {ok, load_seconds, requests,
    latency_ms: {max, mean}, peak_rss_mb, error}."""
    import numpy as np
    import tensorflow as tf

    from beam_ml.model.serving import answer_grpc, read_warmup_requests
    result: dict = {"ok": False, "requests": 0}
    try:
        requests = read_warmup_requests(model_dir)
        if not requests:
            raise ValueError("the model has no warm-up requests (assets.extra/tf_serving_warmup_requests)")
        start = time.perf_counter()
        signatures = tf.saved_model.load(model_dir).signatures
        result["load_seconds"] = round(time.perf_counter() - start, 3)
        latencies = []
        for request in requests:
            start = time.perf_counter()
            response = answer_grpc(signatures, request)
            latencies.append((time.perf_counter() - start) * 1000)
            for name, tensor in response.outputs.items():
                values = tf.make_ndarray(tensor)
                if values.dtype.kind == "f" and not np.isfinite(values).all():
                    raise ValueError(f"output {name!r} has non-finite values")
            result["requests"] += 1
        result["latency_ms"] = {"max": round(max(latencies), 2), "mean": round(sum(latencies) / len(latencies), 2)}
        result["ok"] = True
    except Exception as e:  # the model's problem, told in the record
        result["error"] = clipped(f"{type(e).__name__}: {e}")
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def validate_in_fresh_process(model_dir: str, timeout: float = VALIDATION_TIMEOUT_SECONDS) -> dict:
    """`validate_here` in a new Python process (see the module docstring); a process that crashes or hangs is a
    failed validation."""
    try:
        done = subprocess.run([sys.executable, "-m", "beam_ml.model.infra", model_dir], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    except subprocess.TimeoutExpired:
        return {"ok": False, "requests": 0, "error": f"loading and answering took over {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        return {"ok": False, "requests": 0,
                "error": clipped(f"the validating process exited with {done.returncode}: {done.stderr.strip()}")}


class InfraValidate(beam.DoFn):
    """Validates the blessed model (see the module docstring); emits the result, or None for a model that is not
    blessed (it will not be pushed: nothing to check)."""

    def process(self, model_dir: str, evaluation: dict):
        yield validate_in_fresh_process(model_dir) if evaluation["blessed"] else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    result = validate_here(args[0])
    print(json.dumps(result, sort_keys=True))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
