"""Loading the user's preprocessing/model module by dotted name or by .py path."""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from types import ModuleType

REQUIRED = ("preprocessing_fn", "run_fn")


@functools.lru_cache(maxsize=None)
def load(spec: str) -> ModuleType:
    """Imports `spec` (`transforms.penguins` or `path/to/module.py`) once per process."""
    if spec.endswith(".py"):
        name = "beam_ml_user_" + os.path.splitext(os.path.basename(spec))[0]
        module_spec = importlib.util.spec_from_file_location(name, spec)
        if module_spec is None or not os.path.exists(spec):
            raise ImportError(f"no module file at {spec}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)


def check(spec: str) -> ModuleType:
    """Loads the module and checks it defines the functions the pipeline calls; raises ValueError if not."""
    try:
        module = load(spec)
    except ImportError as e:
        raise ValueError(f"cannot import {spec!r}: {e}") from e
    missing = [name for name in REQUIRED if not callable(getattr(module, name, None))]
    if missing:
        raise ValueError(f"{spec!r} does not define {', '.join(missing)}")
    return module
