"""The run every job makes: its own new directory, and its record `<output_dir>/<run_id>/run_manifest.json`, written
whole when the run ends either way.

`RunContext.start` gives a job its run (id, directory, start time); a job's plan holds it and asks it for the
`RunManifest`, passing only the job's own fields. Every record has the same header: `job`, `run_id`, `run_dir`,
`started`, `versions` (the stack's package versions), `config` (the options as given, credentials masked), then
`status` (`succeeded` | `failed`), `finished` and `error`.
"""
from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import logging
import os
import secrets
import socket
import time
from typing import Any, Mapping, Optional

from beam_ml.core import fileutil
from beam_ml.core.errors import ConfigError
from beam_ml.core.lock import create_exclusive
from beam_ml.core.redact import clipped_values

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
    """Writes the run record from the fields known when the graph is built plus those the run computes."""

    def __init__(self, run_dir: str, known: Mapping[str, Any]):
        self.path = os.path.join(run_dir, MANIFEST_FILE)
        self._known = dict(known)

    def record(self, status: str, **computed: Any) -> dict[str, Any]:
        return clipped_values({"error": None, **self._known, **computed, "status": status, "finished": utc_now()})

    def running(self, stage: str = "started", **progress: Any) -> dict[str, Any]:
        """The record of a run in progress (`status: running`, not finished, launched by this host and process, at
        `stage`, with the fields computed so far): written when the run starts and as it passes stages, so a run
        killed midway still shows, as running since `started`, and a failed one keeps what it had reached.
        `stages` lists each stage reached with its time (the report's stage timings)."""
        progress.setdefault("stages", [{"stage": stage, "at": utc_now()}])
        return clipped_values({"error": None, **self._known, **progress, "status": "running", "stage": stage,
                               "finished": None,
                               "launcher": {"host": socket.gethostname(), "pid": os.getpid(),
                                            "claim": secrets.token_hex(8)}})  # tells two launchers apart

    def write_progress(self, stage: str, **progress: Any) -> dict[str, Any]:
        """Records that the run reached `stage`, with the fields computed so far (those recorded at earlier stages
        are kept)."""
        try:
            current = self._current()
        except Exception as e:  # unreadable now: rewriting it would drop what earlier stages recorded
            logging.getLogger(__name__).warning("run record %s unreadable (%s); stage %r not recorded", self.path,
                                                e, stage)
            return {}
        so_far = self.progress_of(current)
        so_far.pop("stage", None)
        stages = [*so_far.pop("stages", []), {"stage": stage, "at": utc_now()}]
        record = self.running(stage, **{**so_far, **progress, "stages": stages})
        fileutil.write_json(self.path, record)
        return record

    def _current(self) -> Optional[dict[str, Any]]:
        """The record on disk, or None if there is none yet; raises if it is there but cannot be read."""
        import tensorflow as tf
        if not tf.io.gfile.exists(self.path):
            return None
        return json.loads(fileutil.read_text(self.path))

    @staticmethod
    def progress_of(record: Optional[Mapping[str, Any]]) -> dict[str, Any]:
        """What a running record had computed (counts, anomalies, the stage reached), to keep in a failed one."""
        if not record or record.get("status") != "running":
            return {}
        return {k: v for k, v in record.items() if k not in ("status", "finished", "error", "launcher")}

    def write(self, status: str, **computed: Any) -> dict[str, Any]:
        """Writes the final record, `status` (`succeeded` | `failed` | `cancelled`), keeping the stages reached."""
        try:
            current = self._current() or {}
        except Exception:  # the final record matters more than the stage times it would have kept
            current = {}
        computed["stages"] = [*current.get("stages", []), {"stage": status, "at": utc_now()}]
        if status != "succeeded" and current.get("stage"):
            computed.setdefault("stage", current["stage"])  # the last stage the failed run reached
        record = self.record(status, **computed)
        fileutil.write_json(self.path, record)
        return record


def new_run_id() -> str:
    """A run's default id: UTC time plus a random suffix (sortable, unique across concurrent launches)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


@dataclasses.dataclass(frozen=True)
class RunContext:
    """One run of a job: its id, its directory (new: nothing else writes there), when it started and the options it
    was given (as recorded, credentials masked).

    Example::

        run = RunContext.start("batch_predict", config.output_dir, config.run_id, config.to_dict())
        manifest = run.manifest(model_dir=model_dir, counts={"read": 0, "predicted": 0, "dead_letter": 0})
    """

    job: str
    run_id: str
    run_dir: str
    started: str
    options: Mapping[str, Any]

    @classmethod
    def start(cls, job: str, output_dir: str, run_id: Optional[str], options: Mapping[str, Any]) -> "RunContext":
        """A new run under `output_dir`: `run_id` (default: UTC time plus a random suffix) must not exist yet, and a
        local `output_dir` must be a writable directory (ConfigError naming --run_id or --output_dir). Nothing is
        written yet: `claim` creates the directory when the run starts."""
        import tensorflow as tf
        problem = fileutil.unwritable_reason(output_dir)
        if problem:
            raise ConfigError("output_dir", f"cannot write runs to {output_dir}: {problem}")
        run_id = run_id or new_run_id()
        run_dir = os.path.join(output_dir, run_id)
        if tf.io.gfile.exists(run_dir):
            raise ConfigError("run_id", f"{run_dir} already exists; each run needs its own directory")
        return cls(job, run_id, run_dir, utc_now(), dict(options))

    def claim(self, first_record: Mapping[str, Any]) -> None:
        """Makes the run directory this launch's, and writes `first_record` (`RunManifest.running()`) as its record.
        No other launch can claim it: on a local or mounted file system the directory is created in one atomic step;
        on gs:// the record is created with a precondition that nothing is there. So of two launches with the same
        run id one is refused even when they start together. ConfigError naming --run_id (taken) or --output_dir
        (cannot be created)."""
        taken = ConfigError("run_id", f"{self.run_dir} already exists; each run needs its own directory")
        record = os.path.join(self.run_dir, MANIFEST_FILE)
        if "://" in self.run_dir:
            try:
                created = create_exclusive(record, fileutil.json_bytes(first_record))
            except Exception as e:  # no exclusive create for the scheme, no permission
                raise ConfigError("output_dir", f"cannot claim the run directory {self.run_dir}: "
                                                f"{type(e).__name__}: {e}") from None
            if not created:
                raise taken
            return
        try:
            os.makedirs(os.path.dirname(self.run_dir), exist_ok=True)
            os.mkdir(self.run_dir)
        except FileExistsError:
            if os.path.isdir(self.run_dir):
                raise taken from None
            raise ConfigError("output_dir", f"cannot create the run directory {self.run_dir}: a file is in the "
                                            f"way") from None
        except OSError as e:  # under a file, no permission, a full disk
            raise ConfigError("output_dir", f"cannot create the run directory {self.run_dir}: "
                                            f"{e.strerror or e}") from None
        try:
            fileutil.write_json(record, first_record)
        except Exception as e:  # e.g. a full disk: the directory stays claimed, named in the message
            raise ConfigError("output_dir", f"claimed {self.run_dir} but cannot write its record: "
                                            f"{type(e).__name__}: {e}") from None

    def manifest(self, **job_fields: Any) -> RunManifest:
        """The run record: the header every job shares and `job_fields`, the job's own (those the run computes at
        their defaults until it does)."""
        return RunManifest(self.run_dir, {
            "job": self.job, "run_id": self.run_id, "run_dir": self.run_dir, "started": self.started,
            "versions": package_versions(), "config": dict(self.options), **job_fields})
