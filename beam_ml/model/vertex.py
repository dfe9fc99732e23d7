"""Registering a pushed version in Vertex AI Model Registry, served by Vertex's prebuilt TensorFlow container.

    python -m beam_ml.model.vertex upload --version_dir gs://BUCKET/serving/penguins/1796423017 \\
        --project my-project --region europe-west1 [--display_name penguins] [--dry_run]

builds the `UploadModelRequest` (google-cloud-aiplatform's `ModelServiceClient.upload_model`): the version directory
as the artifact URI (Vertex reads the SavedModel from it; it must be on gs://), the prebuilt TF 2.16 CPU serving
container, and a label with the version. `--dry_run` prints the request as JSON and sends nothing; else
it is sent and the registered model's resource name printed. Python: `upload(upload_request(...))`. The same as
`gcloud ai models upload --region R --display-name N --artifact-uri URI --container-image-uri IMAGE`.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Optional, Sequence

# Vertex AI's prebuilt TensorFlow serving image for the stack's TensorFlow (2.16), CPU.
PREBUILT_TF_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-16:latest"
REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")


def upload_request(version_dir: str, project: str, region: str, display_name: Optional[str] = None,
                   image: str = PREBUILT_TF_IMAGE) -> Any:
    """The `UploadModelRequest` for a pushed version (see the module docstring); built offline, nothing is read.
    ValueError naming the argument for a version that is not on gs:// or not a version directory, or a malformed
    region."""
    from google.cloud import aiplatform_v1
    version = os.path.basename(version_dir.rstrip("/"))
    if not version_dir.startswith("gs://") or not version.isdigit():
        raise ValueError(f"--version_dir {version_dir}: a pushed version on gs:// (<serving_dir>/<version>); Vertex "
                         f"AI reads models from Cloud Storage only")
    if not REGION.match(region):
        raise ValueError(f"--region {region!r}: a Google Cloud region, e.g. europe-west1")
    name = display_name or os.path.basename(os.path.dirname(version_dir.rstrip("/")))
    return aiplatform_v1.UploadModelRequest(
        parent=f"projects/{project}/locations/{region}",
        model=aiplatform_v1.Model(display_name=name, artifact_uri=version_dir.rstrip("/"),
                                  container_spec=aiplatform_v1.ModelContainerSpec(image_uri=image),
                                  version_description=f"beam_ml push {version}",
                                  labels={"beam_ml_version": version}))


def upload(request: Any, client: Optional[Any] = None) -> str:
    """Sends the request and waits for the registered model; returns its resource name. `client` defaults to a
    `ModelServiceClient` for the request's region (credentials from the environment)."""
    from google.cloud import aiplatform_v1
    if client is None:
        region = request.parent.split("/")[3]
        client = aiplatform_v1.ModelServiceClient(
            client_options={"api_endpoint": f"{region}-aiplatform.googleapis.com"})
    return client.upload_model(request=request).result().model


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m beam_ml.model.vertex", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("upload", help="register a pushed version in Vertex AI Model Registry")
    command.add_argument("--version_dir", required=True, help="gs://.../<serving_dir>/<version>")
    command.add_argument("--project", required=True)
    command.add_argument("--region", required=True)
    command.add_argument("--display_name", default=None, help="default: the serving directory's name")
    command.add_argument("--image", default=PREBUILT_TF_IMAGE, help="the serving container")
    command.add_argument("--dry_run", action="store_true", help="print the request, send nothing")
    args = parser.parse_args(argv)
    try:
        request = upload_request(args.version_dir, args.project, args.region, args.display_name, args.image)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        from google.protobuf import json_format
        print(json.dumps(json_format.MessageToDict(type(request).pb(request)), indent=2, sort_keys=True))
        return 0
    print(upload(request))
    return 0


if __name__ == "__main__":
    sys.exit(main())
