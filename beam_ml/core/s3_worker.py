"""Imported by Beam's SDK workers as a plugin (`--beam_plugins`, added by the launcher when a run keeps files on
s3://): TensorFlow's file API gets s3:// there too, before any step runs. See `beam_ml.core.s3`.

A worker process ends by returning from Beam's worker main, or by an uncaught exception; it then leaves without
interpreter teardown (tensorflow-io's S3 client would abort it, which the runner reports as a crashed worker), with
exit code 0 or 1 as Python would have given.
"""
import atexit
import sys

from beam_ml.core import s3
from beam_ml.core.runtime import exit_now

s3.enable()
_uncaught: list[BaseException] = []
_excepthook = sys.excepthook


def _record_uncaught(kind, value, traceback) -> None:
    _uncaught.append(value)
    _excepthook(kind, value, traceback)


sys.excepthook = _record_uncaught
atexit.register(lambda: exit_now(1 if _uncaught else 0))
