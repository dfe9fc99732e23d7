"""Push: publish a blessed model to `<serving_dir>/<version>/` (TF Serving's layout, version = unix time).

A reader never sees a partial version: the model is copied under a hidden `.partial-*` name (TF Serving only
loads numeric directory names) and renamed into place in one step. On object stores without directory rename
(gs://) the files are copied straight into the version directory with `saved_model.pb` last, since a SavedModel is
only loadable once that file exists. Leftover `.partial-*` directories of a crashed push are removed by the next
push (one pusher per serving directory at a time).
"""
from __future__ import annotations

import os
import shutil
import time
import uuid
from typing import Optional

import apache_beam as beam

PARTIAL_PREFIX = ".partial-"
SAVED_MODEL_FILE = "saved_model.pb"


def versions(serving_dir: str) -> list[int]:
    """Complete model versions in `serving_dir`, ascending."""
    import tensorflow as tf
    if not tf.io.gfile.isdir(serving_dir):
        return []
    found = []
    for name in tf.io.gfile.listdir(serving_dir):
        name = name.rstrip("/")
        if name.isdigit() and tf.io.gfile.exists(os.path.join(serving_dir, name, SAVED_MODEL_FILE)):
            found.append(int(name))
    return sorted(found)


def latest_model(serving_dir: str) -> Optional[str]:
    """The path of the newest pushed model, or None."""
    found = versions(serving_dir)
    return os.path.join(serving_dir, str(found[-1])) if found else None


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


def push_model(model_dir: str, serving_dir: str) -> str:
    """Publishes `model_dir` as a new version; returns its path."""
    import tensorflow as tf
    tf.io.gfile.makedirs(serving_dir)
    local = "://" not in serving_dir
    if local:
        for name in os.listdir(serving_dir):
            if name.startswith(PARTIAL_PREFIX):
                shutil.rmtree(os.path.join(serving_dir, name), ignore_errors=True)
    existing = versions(serving_dir)
    version = max(int(time.time()), existing[-1] + 1 if existing else 0)
    if not local:
        target = os.path.join(serving_dir, str(version))
        _copy_tree(model_dir, target)
        return target
    staging = os.path.join(serving_dir, f"{PARTIAL_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
    _copy_tree(model_dir, staging)
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

    def __init__(self, serving_dir: str):
        self._serving_dir = serving_dir

    def process(self, model_dir: str, evaluation: dict):
        yield push_model(model_dir, self._serving_dir) if evaluation["blessed"] else None
