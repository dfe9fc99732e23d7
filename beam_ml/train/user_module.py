"""Loading the user's preprocessing/model module by dotted name or by .py path.

A `.py` path is read once, when the graph is built, and its source travels inside the graph (`UserModule`), so
workers (another machine, another working directory) run exactly the file the job was launched with. A dotted
name must be importable on the workers (installed with the package or in the worker container).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
import sys
import types
from typing import Optional

from beam_ml.core import fileutil

REQUIRED = ("preprocessing_fn", "run_fn")


_LOADED: dict[tuple[str, str], types.ModuleType] = {}


@dataclasses.dataclass(frozen=True)
class UserModule:
    """A user module: `spec` as given, plus the file's source when `spec` is a .py path."""

    spec: str
    source: Optional[str] = None

    @classmethod
    def from_spec(cls, spec: str) -> "UserModule":
        """Reads a .py file now (raises ImportError if it is missing); dotted names are imported on load."""
        if not spec.endswith(".py"):
            return cls(spec)
        try:
            source = fileutil.read_text(spec)  # local or gs://
        except Exception as e:  # OSError or a gfile NotFoundError
            raise ImportError(f"no module file at {spec}: {e}") from e
        return cls(spec if "://" in spec else os.path.abspath(spec), source)

    def load(self) -> types.ModuleType:
        """The imported module, once per process."""
        if self.source is None:
            return importlib.import_module(self.spec)
        key = (self.spec, hashlib.sha256(self.source.encode()).hexdigest())
        if key not in _LOADED:
            name = "beam_ml_user_" + os.path.splitext(os.path.basename(self.spec))[0]
            module = types.ModuleType(name)
            module.__file__ = self.spec
            sys.modules[name] = module  # dataclasses and pickling look modules up by name
            exec(compile(self.source, self.spec, "exec"), module.__dict__)
            _LOADED[key] = module
        return _LOADED[key]


def check(spec: str) -> UserModule:
    """Loads the module and checks it defines the functions the pipeline calls; raises ValueError if not."""
    try:
        user_module = UserModule.from_spec(spec)
        module = user_module.load()
    except ImportError as e:
        raise ValueError(f"cannot import {spec!r}: {e}") from e
    missing = [name for name in REQUIRED if not callable(getattr(module, name, None))]
    if missing:
        raise ValueError(f"{spec!r} does not define {', '.join(missing)}")
    return user_module
