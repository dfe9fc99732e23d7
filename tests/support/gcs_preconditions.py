"""Runs gcp-storage-emulator with Cloud Storage's `ifGenerationMatch` precondition on object uploads and deletes.

The emulator ignores preconditions (checked: a second upload with `ifGenerationMatch=0` succeeds), which
`beam_ml.core.lock` relies on for exclusive creates and deletes on gs://. This adds the documented rule to it: the
request fails with 412 Precondition Failed unless the object's current generation equals the given one (0: the
object must not exist). Run with the emulator venv's python, arguments as for `gcp-storage-emulator`.
"""
import sys
import threading
from http import HTTPStatus

from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

_one_at_a_time = threading.Lock()  # the check and the write are one step, as on GCS


def _current_generation(storage, bucket: str, name: str) -> int:
    try:
        return int(storage.get_file_obj(bucket, name).get("generation") or 0)
    except NotFound:
        return 0


def _object_name(request) -> str:
    if "object_id" in request.params:
        return request.params["object_id"]
    if "name" in request.query:
        return request.query["name"][0]
    return (request.data or {}).get("meta", {}).get("name") or (request.data or {}).get("name")


def _with_precondition(handler):
    def checked(request, response, storage, *args, **kwargs):
        wanted = request.query.get("ifGenerationMatch")
        if not wanted:
            return handler(request, response, storage, *args, **kwargs)
        with _one_at_a_time:
            if _current_generation(storage, request.params["bucket_name"], _object_name(request)) != int(wanted[0]):
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json({"error": {"code": 412, "message": "conditionNotMet",
                                         "errors": [{"reason": "conditionNotMet", "message": "Precondition Failed"}]}})
                return None
            return handler(request, response, storage, *args, **kwargs)
    return checked


objects.insert = _with_precondition(objects.insert)
objects.delete = _with_precondition(objects.delete)

if __name__ == "__main__":
    from gcp_storage_emulator.__main__ import main  # imports the server, whose routes take the wrapped handlers
    sys.exit(main(sys.argv[1:]))
