"""Infra validation (TFX InfraValidator's job): before a model is pushed, a fresh process loads it as TF Serving
would and answers its warm-up requests (`beam_ml.model.serving`); a model that does not load, or fails or answers
with non-finite numbers, is not pushed. The process records how long loading took, each request's latency and its
peak memory.

    python -m beam_ml.model.infra MODEL_DIR     # prints the result as JSON; exit 0 if the model is servable

A fresh process, not the training worker's: what TF Serving gets is the directory alone, without the Python objects
and custom code that training had loaded. This checks the model against TensorFlow's own runtime in this
environment. Where TF Serving itself is on the machine (`tensorflow_model_server` on PATH, or the binary
$BEAM_ML_MODEL_SERVER names), the check runs against it instead (`validate_on_model_server`): the server loads the
model as it would in production (its own warm-up included), then each warm-up request is sent over gRPC and over
REST, and both answers must agree. A scikit-learn or XGBoost model is loaded in the fresh process with its transform
graph (`beam_ml.model.estimators`) and scores the rows of the same warm-up requests.
"""
from __future__ import annotations

import base64
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any, Optional, Sequence

import apache_beam as beam

from beam_ml.core.fileutil import copy_tree, storage_path
from beam_ml.core.redact import clipped
from beam_ml.core.runtime import exit_now

VALIDATION_TIMEOUT_SECONDS = 600
MODEL_SERVER_ENV = "BEAM_ML_MODEL_SERVER"
MODEL_SERVER_BINARY = "tensorflow_model_server"


def validate_here(model_dir: str) -> dict:
    """Loads `model_dir` in this process and answers its warm-up requests: {ok, load_seconds, requests,
    latency_ms: {max, mean}, peak_rss_mb, error}."""
    import numpy as np
    import tensorflow as tf

    from beam_ml.model.artifact import TENSORFLOW, model_framework
    from beam_ml.model.estimators import EstimatorModel
    from beam_ml.model.serving import EXAMPLES_INPUT, answer_grpc, read_warmup_requests
    result: dict = {"ok": False, "requests": 0}
    try:
        requests = read_warmup_requests(model_dir)
        if not requests:
            raise ValueError("the model has no warm-up requests (assets.extra/tf_serving_warmup_requests)")
        start = time.perf_counter()
        if model_framework(model_dir) == TENSORFLOW:
            signatures = tf.saved_model.load(model_dir).signatures

            def answer(request) -> dict:
                return {name: tf.make_ndarray(tensor)
                        for name, tensor in answer_grpc(signatures, request).outputs.items()}
        else:
            model = EstimatorModel(model_dir)

            def answer(request) -> dict:
                return {"scores": model.predict_examples(tf.make_ndarray(request.inputs[EXAMPLES_INPUT]).tolist())}
        result["load_seconds"] = round(time.perf_counter() - start, 3)
        latencies = []
        for request in requests:
            start = time.perf_counter()
            outputs = answer(request)
            latencies.append((time.perf_counter() - start) * 1000)
            for name, values in outputs.items():
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


def model_server() -> Optional[str]:
    """The TF Serving binary to validate against: $BEAM_ML_MODEL_SERVER, else `tensorflow_model_server` on PATH,
    else None."""
    return os.environ.get(MODEL_SERVER_ENV) or shutil.which(MODEL_SERVER_BINARY)


def validate_servable(model_dir: str) -> dict:
    """`validate_on_model_server` for a TensorFlow model where TF Serving is on the machine, else
    `validate_in_fresh_process`."""
    from beam_ml.model.artifact import TENSORFLOW, model_framework
    binary = model_server() if model_framework(model_dir) == TENSORFLOW else None
    return validate_on_model_server(model_dir, binary) if binary else validate_in_fresh_process(model_dir)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model_status(rest_port: int, name: str) -> Optional[dict]:
    """The version status TF Serving's REST API reports, or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/{name}", timeout=5) as answer:
            return json.load(answer)["model_version_status"][0]
    except (OSError, ValueError, KeyError, IndexError):
        return None


def _rest_predict(rest_port: int, name: str, request: Any) -> dict:
    """The REST answer (row format) to a `serving_default` PredictRequest's examples."""
    import tensorflow as tf

    from beam_ml.model.serving import EXAMPLES_INPUT
    body = {"signature_name": request.model_spec.signature_name,
            "instances": [{"b64": base64.b64encode(e).decode("ascii")}
                          for e in tf.make_ndarray(request.inputs[EXAMPLES_INPUT]).tolist()]}
    post = urllib.request.Request(f"http://127.0.0.1:{rest_port}/v1/models/{name}:predict",
                                  data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(post, timeout=60) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as e:
        raise ValueError(f"REST predict answered {e.code}: {e.read().decode(errors='replace')[:500]}") from None


def _agree(rest: dict, grpc_response: Any) -> None:
    """ValueError unless the REST predictions and the gRPC outputs are the same finite numbers."""
    import numpy as np
    import tensorflow as tf
    outputs = {name: tf.make_ndarray(tensor) for name, tensor in grpc_response.outputs.items()}
    predictions = rest["predictions"]
    by_name = ({name: np.array([p[name] for p in predictions]) for name in outputs}
               if len(outputs) > 1 else {name: np.array(predictions) for name in outputs})
    for name, values in outputs.items():
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise ValueError(f"output {name!r} has non-finite values")
        if values.dtype.kind in "fiu" and not np.allclose(values, by_name[name], rtol=1e-5, atol=1e-6):
            raise ValueError(f"output {name!r} differs between the REST and the gRPC answer")


def _peak_rss_mb(pid: int) -> Optional[float]:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(round(int(line.split()[1]) / 1024, 1) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None


def validate_on_model_server(model_dir: str, binary: str, timeout: float = VALIDATION_TIMEOUT_SECONDS) -> dict:
    """Serves `model_dir` (a local directory) with the TF Serving binary `binary` on loopback ports and sends each
    warm-up request over gRPC and REST: {ok, server, load_seconds, requests, latency_ms: {grpc, rest: {max,
    mean}}, peak_rss_mb (the server's), error}."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from beam_ml.model.serving import read_warmup_requests
    result: dict = {"ok": False, "requests": 0, "server": binary}
    with tempfile.TemporaryDirectory(prefix="model-server-") as base:
        log_path = os.path.join(base, "server.log")
        process = None
        try:
            requests = read_warmup_requests(model_dir)
            if not requests:
                raise ValueError("the model has no warm-up requests (assets.extra/tf_serving_warmup_requests)")
            name = requests[0].model_spec.name or "model"
            version_dir = os.path.join(base, "models", name, "1")  # TF Serving's <base path>/<version>
            os.makedirs(os.path.dirname(version_dir))
            if "://" in model_dir:  # the server reads a local copy
                copy_tree(model_dir, version_dir)
            else:
                os.symlink(os.path.abspath(model_dir), version_dir)
            grpc_port, rest_port = _free_port(), _free_port()
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [binary, f"--port={grpc_port}", f"--rest_api_port={rest_port}", f"--model_name={name}",
                     f"--model_base_path={os.path.join(base, 'models', name)}"], stdout=log, stderr=subprocess.STDOUT)
            start = time.perf_counter()
            while True:
                status = _model_status(rest_port, name)
                if status and status.get("state") == "AVAILABLE":
                    break
                if status and status.get("state") == "END" or process.poll() is not None:
                    raise ValueError(f"the server did not load the model: {(status or {}).get('status')}")
                if time.perf_counter() - start > timeout:
                    raise ValueError(f"the server did not load the model within {timeout:.0f} s")
                time.sleep(0.2)
            result["load_seconds"] = round(time.perf_counter() - start, 3)
            latencies: dict[str, list[float]] = {"grpc": [], "rest": []}
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                for request in requests:
                    started = time.perf_counter()
                    response = stub.Predict(request, timeout=60)
                    latencies["grpc"].append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    rest = _rest_predict(rest_port, name, request)
                    latencies["rest"].append((time.perf_counter() - started) * 1000)
                    _agree(rest, response)
                    result["requests"] += 1
            result["latency_ms"] = {way: {"max": round(max(ms), 2), "mean": round(sum(ms) / len(ms), 2)}
                                    for way, ms in latencies.items()}
            result["peak_rss_mb"] = _peak_rss_mb(process.pid)
            result["ok"] = True
        except Exception as e:  # the model's problem (or the server's), told in the record
            with open(log_path, "a+", errors="replace") as log:
                log.seek(0)
                tail = log.read()[-1500:].strip()
            result["error"] = clipped(f"{type(e).__name__}: {e}" + (f"; server log: {tail}" if tail else ""))
        finally:
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    return result


class InfraValidate(beam.DoFn):
    """Validates the blessed model (`validate_servable`, see the module docstring); emits the result, or None for a
    model that is not blessed (it will not be pushed: nothing to check)."""

    def process(self, model_dir: str, evaluation: dict):
        yield validate_servable(model_dir) if evaluation["blessed"] else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    result = validate_here(storage_path(args[0]))
    print(json.dumps(result, sort_keys=True))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    exit_now(main())
