"""Small file helpers over tf.io.gfile, so the same code writes locally, to gs:// and to s3://; and the paths where a
job keeps runs and models made ready for workers.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

from beam_ml.core import s3


def write_bytes(path: str, data: bytes) -> None:
    """Writes a file whole: locally to a temporary name, then renamed over the target; on an object store in one
    upload, which is whole or absent by itself (and tensorflow-io's S3 cannot rename an empty object)."""
    import tensorflow as tf
    if "://" in path:
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(data)
        return
    tf.io.gfile.makedirs(os.path.dirname(path))
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with tf.io.gfile.GFile(tmp, "wb") as f:
            f.write(data)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except Exception:
        try:  # a full disk must not also leave our partial file behind
            tf.io.gfile.remove(tmp)
        except Exception:
            pass
        raise


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def json_bytes(value: Any) -> bytes:
    """How beam_ml writes a JSON record: indented, keys sorted."""
    return (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")


def write_json(path: str, value: Any) -> None:
    write_bytes(path, json_bytes(value))


_TENSORFLOW_SCHEMES: dict[str, bool] = {}  # scheme -> whether TensorFlow's file API has it (asked once a process)


def tensorflow_reaches(path: str) -> bool:
    """Whether TensorFlow's file API has the filesystem of `path` here: local and gs:// paths; s3:// once a job's
    run or model path is there (`storage_path`; Beam's own filesystems read inputs on S3 either way). The first path
    of a scheme is probed; the answer holds for the process."""
    if "://" not in path:
        return True
    scheme = path.split("://", 1)[0]
    if scheme == "s3":  # not probed: tensorflow-io (which tf.Transform imports) is set up for S3 by `storage_path`
        return s3.enabled()
    if scheme not in _TENSORFLOW_SCHEMES:
        import tensorflow as tf
        try:
            tf.io.gfile.exists(path)
            _TENSORFLOW_SCHEMES[scheme] = True
        except tf.errors.UnimplementedError:
            _TENSORFLOW_SCHEMES[scheme] = False
    return _TENSORFLOW_SCHEMES[scheme]


def unwritable_reason(path: str) -> Optional[str]:
    """Why a directory cannot be written (or created) at `path`, or None: a local one is a file, sits under a file,
    or its nearest existing directory is not writable; a remote one is on a filesystem TensorFlow's file API (which
    writes models, statistics and records) does not have here. Permissions on a remote path are not checked: that
    needs a write."""
    if "://" in path:
        scheme = path.split("://", 1)[0]
        problem = s3.enable() if scheme == "s3" else None
        if problem or not tensorflow_reaches(path):
            return (f"TensorFlow's file API, which writes runs and models, has no {scheme}:// filesystem here"
                    f"{f' ({problem})' if problem else ''} (inputs may be on {scheme}://; outputs go to a local "
                    f"path, gs:// or s3://)")
        return None
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{existing} is a file, not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def copy_file(src: str, dst: str) -> None:
    import tensorflow as tf
    tf.io.gfile.copy(src, dst, overwrite=True)


def copy_tree(src: str, dst: str, last: Optional[str] = None, skip: tuple[str, ...] = ()) -> None:
    """Copies a file, or every file of a directory under `dst` but those in `skip` (paths relative to `src`); the
    file named `last` (relative to `src`) last, so that a reader waiting for it finds the rest complete."""
    import tensorflow as tf
    remote = "://" in dst  # an object store has no directories to make
    if not tf.io.gfile.isdir(src):
        if not remote:
            tf.io.gfile.makedirs(os.path.dirname(dst))
        copy_file(src, dst)
        return
    files = []
    for directory, _, names in tf.io.gfile.walk(src):
        rel = os.path.relpath(directory, src)
        if not remote:
            tf.io.gfile.makedirs(os.path.join(dst, rel))
        files.extend(os.path.normpath(os.path.join(rel, n)) for n in names)
    for rel in sorted(files, key=lambda r: (r == last, r)):
        if rel not in skip:
            copy_file(os.path.join(src, rel), os.path.join(dst, rel))


def exists(path: str) -> bool:
    import tensorflow as tf
    return tf.io.gfile.exists(path)


def read_text(path: str) -> str:
    import tensorflow as tf
    with tf.io.gfile.GFile(path) as f:
        return f.read()


def read_bytes(path: str) -> bytes:
    import tensorflow as tf
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def storage_path(path: Optional[str]) -> Optional[str]:
    """A path where a job keeps runs or models, as its workers and TensorFlow use it: a local one made absolute; on
    s3://, TensorFlow's file API given that filesystem in this process (`beam_ml.core.s3`)."""
    if path is not None and path.startswith("s3://"):
        s3.enable()  # a path TensorFlow cannot reach is refused where it is checked (`unwritable_reason`)
    return absolute(path)


def absolute(path: Optional[str]) -> Optional[str]:
    """Local paths made absolute: workers (other processes, machines) must not depend on the launcher's cwd."""
    return path if path is None or "://" in path else os.path.abspath(path)
