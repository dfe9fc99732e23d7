"""Small file helpers over tf.io.gfile, so the same code writes locally and to gs://; and local paths made
absolute for workers.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional


def write_bytes(path: str, data: bytes) -> None:
    """Writes a file whole: to a temporary name, then renamed over the target."""
    import tensorflow as tf
    tf.io.gfile.makedirs(os.path.dirname(path))
    tmp = f"{path}.tmp-{os.getpid()}"
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str, value: Any) -> None:
    write_text(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def read_text(path: str) -> str:
    import tensorflow as tf
    with tf.io.gfile.GFile(path) as f:
        return f.read()


def absolute(path: Optional[str]) -> Optional[str]:
    """Local paths made absolute: workers (other processes, machines) must not depend on the launcher's cwd."""
    return path if path is None or "://" in path else os.path.abspath(path)
