"""The Vertex AI Model Registry upload of a pushed version, built offline and sent by google-cloud-aiplatform's own
client (REST transport) to a server on loopback that records the request and answers as Vertex does."""
import http.server
import json
import threading

import pytest

from beam_ml.model.vertex import PREBUILT_TF_IMAGE, main, upload, upload_request

VERSION = "gs://my-bucket/serving/penguins/1796423017"


class _Vertex(http.server.BaseHTTPRequestHandler):
    """Answers `models:upload` with a finished long-running operation, keeping what it was sent."""

    received: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.path, body))
        answer = json.dumps({"name": "projects/my-project/locations/europe-west1/operations/1", "done": True,
                             "response": {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse",
                                          "model": "projects/my-project/locations/europe-west1/models/42"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def test_a_pushed_version_is_registered_with_the_prebuilt_tensorflow_container():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1
    from google.cloud.aiplatform_v1.services.model_service.transports.rest import ModelServiceRestTransport

    server = http.server.HTTPServer(("127.0.0.1", 0), _Vertex)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        transport = ModelServiceRestTransport(host=f"127.0.0.1:{server.server_port}",
                                              credentials=AnonymousCredentials(), url_scheme="http")
        client = aiplatform_v1.ModelServiceClient(transport=transport)
        model = upload(upload_request(VERSION + "/", "my-project", "europe-west1"), client)
    finally:
        server.shutdown()
    assert model == "projects/my-project/locations/europe-west1/models/42"
    [(path, body)] = _Vertex.received
    assert path.split("?")[0] == "/v1/projects/my-project/locations/europe-west1/models:upload"
    assert body["model"] == {"displayName": "penguins", "artifactUri": VERSION,
                             "containerSpec": {"imageUri": PREBUILT_TF_IMAGE},
                             "versionDescription": "beam_ml push 1796423017",
                             "labels": {"beam_ml_version": "1796423017"}}


def test_the_command_prints_the_request_on_a_dry_run_and_refuses_what_vertex_cannot_read(capsys):
    assert main(["upload", "--version_dir", VERSION, "--project", "p", "--region", "us-central1", "--dry_run",
                 "--display_name", "penguins-prod"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["parent"] == "projects/p/locations/us-central1"
    assert printed["model"]["displayName"] == "penguins-prod" and printed["model"]["artifactUri"] == VERSION
    assert main(["upload", "--version_dir", "serving/penguins/1", "--project", "p", "--region", "us-central1"]) == 2
    assert "Vertex AI reads models from Cloud Storage only" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--region 'Europe'"):
        upload_request(VERSION, "p", "Europe")
