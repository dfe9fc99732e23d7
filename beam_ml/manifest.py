"""The run record: `<output_dir>/<run_id>/run_manifest.json`, written whole when the run ends either way."""
from __future__ import annotations

import datetime
import importlib.metadata
import os
from typing import Any

from beam_ml import fileutil

MANIFEST_FILE = "run_manifest.json"
_PACKAGES = ("apache-beam", "tensorflow", "tf-keras", "tensorflow-data-validation", "tensorflow-transform",
             "tensorflow-model-analysis", "tfx-bsl", "tensorflow-metadata", "pyarrow", "numpy", "beam-ml")


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


class RunManifest:
    """Writes the manifest from the fields known when the graph is built plus those the run computes."""

    def __init__(self, run_dir: str, known: dict[str, Any]):
        self.path = os.path.join(run_dir, MANIFEST_FILE)
        self._known = dict(known)

    def record(self, status: str, **computed: Any) -> dict[str, Any]:
        record = {"counts": {"read": 0, "dead_letter": 0, "splits": {}}, "anomalies": [], "metrics": {},
                  "blessed": False, "pushed_model_dir": None, "leakage": None, "error": None}
        record.update(self._known)
        record.update(computed)
        record.update(status=status, finished=utc_now())
        return record

    def write(self, status: str, **computed: Any) -> dict[str, Any]:
        record = self.record(status, **computed)
        fileutil.write_json(self.path, record)
        return record
