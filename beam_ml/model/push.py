"""Push: publish a blessed model to `<serving_dir>/<version>/` (TF Serving's layout, version = unix time).

On a local or mounted file system a reader never sees a partial version: the model is copied under a hidden
`.partial-*` name (TF Serving only loads numeric directory names) and renamed into place in one step. Leftover
`.partial-*` directories of a crashed push are removed by the next push (one pusher per serving directory at a
time). Object stores (gs://) have no directory rename: the files are copied straight into the version directory with
`saved_model.pb` last, since a SavedModel is only loadable once that file exists. There a reader can see the numbered
directory before it is complete, and a crashed copy leaves it without `saved_model.pb`; `versions()` ignores such
directories.

Each pushed version carries `assets.extra/beam_ml_push.json` (a push id unique to the launch, and the source model;
TF Serving ignores `assets.extra`), so a push retried by the runner after it had succeeded returns the version
already pushed instead of publishing the same model twice.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from typing import Optional

import apache_beam as beam

from beam_ml.model.artifact import PUSH_RECORD, SAVED_MODEL_FILE, is_saved_model

PARTIAL_PREFIX = ".partial-"


def versions(serving_dir: str) -> list[int]:
    """Complete model versions in `serving_dir`, ascending."""
    import tensorflow as tf
    if not tf.io.gfile.isdir(serving_dir):
        return []
    found = []
    for name in tf.io.gfile.listdir(serving_dir):
        name = name.rstrip("/")
        if name.isdigit() and is_saved_model(os.path.join(serving_dir, name)):
            found.append(int(name))
    return sorted(found)


def latest_model(serving_dir: str) -> Optional[str]:
    """The path of the newest pushed model, or None."""
    found = versions(serving_dir)
    return os.path.join(serving_dir, str(found[-1])) if found else None


def pushed_by(serving_dir: str, push_id: str) -> Optional[str]:
    """The version directory that push `push_id` published, or None."""
    import tensorflow as tf
    for version in reversed(versions(serving_dir)):
        record = os.path.join(serving_dir, str(version), PUSH_RECORD)
        if tf.io.gfile.exists(record):
            with tf.io.gfile.GFile(record) as f:
                if json.load(f).get("push_id") == push_id:
                    return os.path.join(serving_dir, str(version))
    return None


def _write_push_record(version_dir: str, push_id: str, model_dir: str) -> None:
    import tensorflow as tf
    path = os.path.join(version_dir, PUSH_RECORD)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump({"push_id": push_id, "model_dir": model_dir}, f)


def _copy_file(src: str, dst: str) -> None:
    import tensorflow as tf
    tf.io.gfile.copy(src, dst, overwrite=True)


def _copy_tree(src: str, dst: str) -> None:
    """Copies every file of `src` under `dst`, `saved_model.pb` last."""
    import tensorflow as tf
    files = []
    for directory, _, names in tf.io.gfile.walk(src):
        rel = os.path.relpath(directory, src)
        tf.io.gfile.makedirs(os.path.normpath(os.path.join(dst, rel)))
        files.extend(os.path.normpath(os.path.join(rel, n)) for n in names)
    for rel in sorted(files, key=lambda r: (r == SAVED_MODEL_FILE, r)):
        _copy_file(os.path.join(src, rel), os.path.join(dst, rel))


def push_model(model_dir: str, serving_dir: str, push_id: str) -> str:
    """Publishes `model_dir` as a new version; returns its path (the existing one if push `push_id`, unique to a
    launch, already published it)."""
    import tensorflow as tf
    tf.io.gfile.makedirs(serving_dir)
    already = pushed_by(serving_dir, push_id)
    if already:
        return already
    local = "://" not in serving_dir
    if local:
        for name in os.listdir(serving_dir):
            if name.startswith(PARTIAL_PREFIX):
                shutil.rmtree(os.path.join(serving_dir, name), ignore_errors=True)
    existing = versions(serving_dir)
    version = max(int(time.time()), existing[-1] + 1 if existing else 0)
    if not local:
        target = os.path.join(serving_dir, str(version))
        _write_push_record(target, push_id, model_dir)  # before saved_model.pb makes the version visible
        _copy_tree(model_dir, target)
        return target
    staging = os.path.join(serving_dir, f"{PARTIAL_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
    _copy_tree(model_dir, staging)
    _write_push_record(staging, push_id, model_dir)
    while True:
        target = os.path.join(serving_dir, str(version))
        try:
            os.rename(staging, target)  # atomic; fails if the version exists (or is a non-empty dir)
            return target
        except OSError:
            if not os.path.exists(target):
                raise
            version += 1


class PushIfBlessed(beam.DoFn):
    """Pushes the model when the evaluation blessed it; emits the pushed path or None."""

    def __init__(self, serving_dir: str, push_id: str):
        self._serving_dir = serving_dir
        self._push_id = push_id

    def process(self, model_dir: str, evaluation: dict):
        yield push_model(model_dir, self._serving_dir, self._push_id) if evaluation["blessed"] else None
