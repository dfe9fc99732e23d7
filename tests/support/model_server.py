"""A stand-in for TF Serving's `tensorflow_model_server` for tests on machines without it (no wheel, Debian package
or container image can be installed here): the same command line (`--port`, `--rest_api_port`, `--model_name`,
`--model_base_path`), the same gRPC `PredictionService/Predict` and REST `GET /v1/models/NAME` and
`POST /v1/models/NAME:predict`, and the same load: the newest version under the base path, its warm-up requests run
before it is AVAILABLE (a failure leaves it END with the error). Answers come from TensorFlow through
`beam_ml.model.serving.answer_grpc`/`answer_rest`, so this checks the client side of infra validation (processes,
ports, both protocols, readiness, failures), not TF Serving's own build.

    python -m tests.support.model_server --port=8500 --rest_api_port=8501 --model_name=m --model_base_path=DIR
"""
import argparse
import json
import os
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from beam_ml.model.serving import answer_grpc, answer_rest, read_warmup_requests


class _Model:
    """The served version: its signatures once loaded and warmed up, else the state and error TF Serving gives."""

    def __init__(self):
        self.version, self.state, self.error, self.signatures = None, "LOADING", "", None

    def load(self, base_path: str) -> None:
        try:
            self.version = max(int(v) for v in os.listdir(base_path) if v.isdigit())
            version_dir = os.path.join(base_path, str(self.version))
            signatures = tf.saved_model.load(version_dir).signatures
            for request in read_warmup_requests(version_dir):
                answer_grpc(signatures, request)
            self.signatures, self.state = signatures, "AVAILABLE"
        except Exception as e:  # TF Serving keeps running and reports the version as END with the error
            self.state, self.error = "END", f"{type(e).__name__}: {e}"

    def status(self) -> dict:
        code = "OK" if self.state != "END" else "UNKNOWN"
        return {"model_version_status": [{"version": str(self.version), "state": self.state,
                                          "status": {"error_code": code, "error_message": self.error}}]}


class _Predictions(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, model: _Model):
        self._model = model

    def Predict(self, request, context):
        if self._model.signatures is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the model is not available")
        try:
            return answer_grpc(self._model.signatures, request)
        except Exception as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{type(e).__name__}: {e}")


def _rest_handler(model: _Model, name: str):
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path != f"/v1/models/{name}":
                return self._send(404, {"error": f"no model at {self.path}"})
            self._send(200, model.status())

        def do_POST(self):
            if self.path != f"/v1/models/{name}:predict" or model.signatures is None:
                return self._send(404, {"error": "the model is not available"})
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            try:
                self._send(200, answer_rest(model.signatures, body))
            except Exception as e:
                self._send(400, {"error": f"{type(e).__name__}: {e}"})

        def log_message(self, *unused):
            pass

    return Handler


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    for flag in ("--port", "--rest_api_port"):
        parser.add_argument(flag, type=int, required=True)
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--model_base_path", required=True)
    args = parser.parse_args(argv)
    model = _Model()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Predictions(model), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    rest = ThreadingHTTPServer(("127.0.0.1", args.rest_api_port), _rest_handler(model, args.model_name))
    threading.Thread(target=model.load, args=(args.model_base_path,), daemon=True).start()
    rest.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
