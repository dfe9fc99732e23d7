"""Push: publish a blessed model to `<serving_dir>/<version>/` (TF Serving's layout, version = unix time).

One pusher at a time per serving directory: a push holds `<serving_dir>/.push.lock` (`core.lock.PathLock`: an
exclusive create on a local disk, gs:// or s3://, naming its owner and expiry) from choosing the version number to
publishing it, so concurrent pushes from several processes or machines publish one after another, each complete.
A version is a model of any framework (`beam_ml.model.artifact`); TF Serving serves the TensorFlow ones.

On a local file system a reader never sees a partial version: the model is copied under a hidden
`.partial-<pid>@<host>-<id>` name (TF Serving only loads numeric directory names) and renamed into place in one step.
A staging directory is removed only by its owner, or by a later push once it is stale: its process is gone from this
host, or (a push from another host) it is older than the lock's expiry. A push that outlived its lock publishes
nothing (LockLost). Object stores (gs://, s3://) have no directory rename: the files are copied
straight into a version directory that did not exist, the model file (`saved_model.pb`, `model.joblib` or
`model.bst`) last, since a model is only loadable once that file exists. There a reader can see the numbered
directory before it is complete, and a crashed copy leaves it without its model file; `versions()` ignores such
directories.

Each pushed version carries `assets.extra/beam_ml_push.json` (a push id unique to the launch, and the source model;
TF Serving ignores `assets.extra`), so a push retried by the runner after it had succeeded returns the version
already pushed instead of publishing the same model twice.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
import uuid
from typing import Optional, Sequence

import apache_beam as beam

from beam_ml.core import fileutil
from beam_ml.core.lock import LockLost, PathLock, pid_alive
from beam_ml.core.runtime import exit_now
from beam_ml.model.artifact import MODEL_FILES, PUSH_RECORD, TENSORFLOW, is_model, model_framework
from beam_ml.model.serving import model_config

PARTIAL_PREFIX = ".partial-"
LOCK_FILE = ".push.lock"
PUSH_LOCK_TTL_SECONDS = 3600.0
PUSH_LOCK_WAIT_SECONDS = 900.0


def versions(serving_dir: str) -> list[int]:
    """Complete model versions in `serving_dir`, ascending."""
    import tensorflow as tf
    if not tf.io.gfile.isdir(serving_dir):
        return []
    found = []
    for name in tf.io.gfile.listdir(serving_dir):
        name = name.rstrip("/")
        if name.isdigit() and is_model(os.path.join(serving_dir, name)):
            found.append(int(name))
    return sorted(found)


def latest_model(serving_dir: str) -> Optional[str]:
    """The path of the newest pushed model, or None."""
    found = versions(serving_dir)
    return os.path.join(serving_dir, str(found[-1])) if found else None


def _push_record(version_dir: str) -> dict:
    """A pushed version's push record ({push_id, model_dir}), or {} for a directory without one."""
    import tensorflow as tf
    record = os.path.join(version_dir, PUSH_RECORD)
    if not tf.io.gfile.exists(record):
        return {}
    with tf.io.gfile.GFile(record) as f:
        return json.load(f)


def pushed_by(serving_dir: str, push_id: str) -> Optional[str]:
    """The version directory that push `push_id` published, or None."""
    for version in reversed(versions(serving_dir)):
        if _push_record(os.path.join(serving_dir, str(version))).get("push_id") == push_id:
            return os.path.join(serving_dir, str(version))
    return None


def pushed_from(model_dir: str) -> Optional[str]:
    """The model directory (a training run's `model/serving`) that the pushed version `model_dir` is a copy of, or
    None for a model that was not pushed."""
    return _push_record(model_dir).get("model_dir")


def _write_push_record(version_dir: str, record: dict) -> None:
    import tensorflow as tf
    path = os.path.join(version_dir, PUSH_RECORD)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(record, f)


def _copy_tree(src: str, dst: str) -> None:
    """Copies every file of `src` under `dst`, its model file last (a server sees a version when it appears), but a
    push record (`src`, a pushed version being rolled back to, has its own: the copy gets a new one)."""
    fileutil.copy_tree(src, dst, last=MODEL_FILES[model_framework(src) or TENSORFLOW], skip=(PUSH_RECORD,))


def push_model(model_dir: str, serving_dir: str, push_id: str, lock_ttl_seconds: float = PUSH_LOCK_TTL_SECONDS,
               lock_wait_seconds: float = PUSH_LOCK_WAIT_SECONDS, trained_as: Optional[str] = None) -> str:
    """Publishes `model_dir` as a new version; returns its path (the existing one if push `push_id`, unique to a
    launch, already published it). Waits up to `lock_wait_seconds` for another push to the same directory (LockBusy
    naming it after that); a push must finish within `lock_ttl_seconds`, after which its lock counts as abandoned.
    The version's push record names `trained_as` (default `model_dir`): the training run's model directory."""
    import tensorflow as tf
    tf.io.gfile.makedirs(serving_dir)
    with PathLock(os.path.join(serving_dir, LOCK_FILE), owner=push_id, ttl_seconds=lock_ttl_seconds,
                  wait_seconds=lock_wait_seconds) as lock:
        already = pushed_by(serving_dir, push_id)
        if already:
            return already
        existing = versions(serving_dir)
        version = max(int(time.time()), existing[-1] + 1 if existing else 0)
        record = {"push_id": push_id, "model_dir": trained_as or model_dir}
        if "://" in serving_dir:
            return _copy_into_new_version(model_dir, serving_dir, version, record)
        _remove_stale_staging(serving_dir, lock_ttl_seconds)
        return _stage_and_rename(model_dir, serving_dir, version, record, lock)


def _copy_into_new_version(model_dir: str, serving_dir: str, version: int, record: dict) -> str:
    import tensorflow as tf
    while tf.io.gfile.exists(os.path.join(serving_dir, str(version))):  # a crashed copy's incomplete directory
        version += 1
    target = os.path.join(serving_dir, str(version))
    _write_push_record(target, record)  # before the model file makes the version visible
    _copy_tree(model_dir, target)
    return target


def _stage_and_rename(model_dir: str, serving_dir: str, version: int, record: dict, lock: PathLock) -> str:
    staging = os.path.join(serving_dir, f"{PARTIAL_PREFIX}{os.getpid()}@{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    try:
        _copy_tree(model_dir, staging)
        _write_push_record(staging, record)
        if not lock.held():  # it expired while we copied and another push took it: publish nothing
            raise LockLost(f"push {record['push_id']} held {lock.path} longer than its expiry and lost it; nothing "
                           f"was published: push again")
        while True:
            target = os.path.join(serving_dir, str(version))
            try:
                os.rename(staging, target)  # atomic; fails if the version exists (or is a non-empty dir)
                return target
            except OSError:
                if not os.path.exists(target):
                    raise
                version += 1
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # ours, after a failure (gone after a successful rename)


_STAGING_NAME = re.compile(rf"^{re.escape(PARTIAL_PREFIX)}(\d+)@(.+)-[0-9a-f]{{8}}$")


def _remove_stale_staging(serving_dir: str, max_age_seconds: float) -> None:
    """Removes staging directories whose push is over: its process is gone from this host, or it is older than a push
    may take."""
    now = time.time()
    for name in os.listdir(serving_dir):
        if not name.startswith(PARTIAL_PREFIX):
            continue
        path = os.path.join(serving_dir, name)
        owner = _STAGING_NAME.match(name)
        try:
            age = now - os.path.getmtime(path)
        except FileNotFoundError:
            continue
        here = owner is not None and owner.group(2) == socket.gethostname()
        if here and pid_alive(int(owner.group(1))):
            continue  # a push on this host still running, however long it takes: only it removes its staging
        if here or age > max_age_seconds:
            shutil.rmtree(path, ignore_errors=True)


MODEL_CONFIG_FILE = "models.config"  # TF Serving's --model_config_file for the serving directory


def rollback(serving_dir: str, to_version: Optional[int] = None) -> str:
    """Serves an earlier version again: publishes a copy of it as the newest version with `push_model` (one pusher
    at a time, never a half-copied version), so TF Serving, which serves the highest number, moves back to it, and
    the next training run is judged against it. The versions in between stay on disk; the copy's push record names
    the training run's model it is (`pushed_from`), as the version it copies does. `to_version` defaults to the
    version before the newest. Returns the new version's path; ValueError naming the versions there are when there
    is nothing to roll back to.

    Example::

        rollback("serving/penguins", to_version=1796423017)
    """
    found = versions(serving_dir)
    target = to_version if to_version is not None else (found[-2] if len(found) > 1 else None)
    if target is None or target not in found[:-1]:
        raise ValueError(f"cannot roll {serving_dir} back to {target if target is not None else 'an earlier version'}"
                         f": its versions are {found or 'none'} (the newest, {found[-1] if found else None}, is "
                         f"serving now)")
    version_dir = os.path.join(serving_dir, str(target))
    return push_model(version_dir, serving_dir, f"rollback-to-{target}-{uuid.uuid4().hex}",
                      trained_as=pushed_from(version_dir) or version_dir)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m beam_ml.model.push rollback --serving_dir DIR [--to VERSION]`: prints the new version as JSON."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m beam_ml.model.push", description=rollback.__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    back = commands.add_parser("rollback", help="serve an earlier version again")
    back.add_argument("--serving_dir", required=True)
    back.add_argument("--to", type=int, default=None, help="the version to serve (default: the one before the newest)")
    args = parser.parse_args(argv)
    try:
        version_dir = rollback(fileutil.storage_path(args.serving_dir), args.to)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"serving": version_dir, "model_dir": pushed_from(version_dir)}))
    return 0


def push_refusal(infra: Sequence[Optional[dict]] = (), lite: Sequence[dict] = ()) -> Optional[str]:
    """Why a blessed model must not be pushed, from the checks that ran before push: infra validation
    (`beam_ml.model.infra`) and the TFLite parity check under its `fail` policy (`beam_ml.model.lite`); None when
    nothing stops it."""
    for result in infra:
        if result is not None and not result["ok"]:
            return f"infra validation failed: {result.get('error')}"
    return next((result["refusal"] for result in lite if result.get("refusal")), None)


class PushIfBlessed(beam.DoFn):
    """Pushes the model when the evaluation blessed it and no check before push refused it (`push_refusal` of the
    `infra` and `lite` side inputs, each empty when its check did not run); emits the pushed path or None. The
    serving directory of a TensorFlow model gets TF Serving's model config (`models.config`) beside its versions."""

    def __init__(self, serving_dir: str, push_id: str):
        self._serving_dir = serving_dir
        self._push_id = push_id

    def process(self, model_dir: str, evaluation: dict, infra: Sequence[Optional[dict]] = (),
                lite: Sequence[dict] = ()):
        if not evaluation["blessed"] or push_refusal(infra, lite):
            yield None
            return
        pushed = push_model(model_dir, self._serving_dir, self._push_id)
        if model_framework(pushed) == TENSORFLOW:
            fileutil.write_text(os.path.join(self._serving_dir, MODEL_CONFIG_FILE),
                                model_config(os.path.basename(self._serving_dir.rstrip("/")), self._serving_dir))
        yield pushed


if __name__ == "__main__":
    exit_now(main())
