"""Process-level fixes for running pipelines: the local runner's per-bundle DoFn inspection, and the garbage
collector's full passes over objects that live as long as the process.

* `dofn_signature_cache()`. Beam 2.66's BundleBasedDirectRunner (the local runner of streaming jobs) does not fuse
  steps: every step gets a bundle for every bundle its input produces, empty ones included, and for each it
  re-derives the `inspect.signature` of every method of the step's DoFn (`userstate.get_dofn_specs` walks all ~40
  methods of a DoFn, several times per bundle). On the telemetry job that was over half of the runner's time
  (`benchmarks/streaming.py`). A function's signature does not change while a pipeline runs, so this memoizes
  `apache_beam.typehints.decorators.get_signature` per function object (weakly: a cached function can still be
  freed). Nothing else changes: each bundle still gets a fresh (pickled and unpickled) DoFn. Applied by
  `beam_ml.launch.run` around runs on local runners, and only on the Beam release it was checked against (a newer Beam
  may have fixed or moved this); Dataflow does not run this code.
* `freeze_long_lived_objects()`. TensorFlow, Beam and a loaded model are over half a million objects that are never
  garbage; each full collection walks them all and holds the interpreter for up to 0.4 s, which a streaming job
  sees as a stall (readings turn late). `gc.freeze()` after start-up and after a model loads takes them out of the
  collector's passes.

`local_run()` is both, as `beam_ml.launch.run` runs every job on a local runner. `exit_now()` is how every entry point
leaves the process.

Example::

    with local_run():
        pipeline.run().wait_until_finish()
"""
from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import os
import sys
import threading
import weakref
from typing import Callable, Iterator

import apache_beam as beam

CHECKED_BEAM_RELEASES = ("2.66.",)
_LOCK = threading.Lock()
_active = 0


_original: Callable[..., inspect.Signature] | None = None


def applies() -> bool:
    """Whether this Beam release is one the cache was checked against."""
    return beam.__version__.startswith(CHECKED_BEAM_RELEASES)


def cached_get_signature(original: Callable[..., inspect.Signature]) -> Callable[..., inspect.Signature]:
    """`original` (Beam's get_signature) memoized per function; a bound method is keyed by its function, apart
    from the unbound one (its signature drops `self`). Callables that cannot be weakly referenced are not
    cached."""
    caches = {False: weakref.WeakKeyDictionary(), True: weakref.WeakKeyDictionary()}

    def get_signature(func):
        bound = hasattr(func, "__self__") and hasattr(func, "__func__")
        target = func.__func__ if bound else func
        cache = caches[bound]
        try:
            return cache[target]
        except KeyError:
            signature = cache[target] = original(func)
            return signature
        except TypeError:  # not weakly referenceable (an instance of a class with __slots__, say)
            return original(func)

    get_signature.beam_ml_cached = True
    return get_signature


@contextlib.contextmanager
def dofn_signature_cache() -> Iterator[bool]:
    """Caches DoFn method signatures while the block runs (nested and concurrent blocks share one cache); yields
    whether the cache is on (False on a Beam release it was not checked against)."""
    global _active, _original
    if not applies():
        logging.getLogger(__name__).info("Beam %s: DoFn signature cache not applied", beam.__version__)
        yield False
        return
    from apache_beam.transforms import core
    from apache_beam.typehints import decorators
    with _LOCK:
        if _active == 0:
            _original = decorators.get_signature
            decorators.get_signature = core.get_signature = cached_get_signature(_original)
        _active += 1
    try:
        yield True
    finally:
        with _LOCK:
            _active -= 1
            if _active == 0:
                decorators.get_signature = core.get_signature = _original
                _original = None


def freeze_long_lived_objects() -> None:
    """Moves every object alive into the collector's permanent generation, after a full collection (see the module
    docstring). Call it when what is alive will stay: after start-up, after a model loads. What an earlier call froze
    is unfrozen first, so that what has become garbage since (a replaced model) is still collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def local_run() -> Iterator[None]:
    """What a run on a local runner gets (see the module docstring): start-up's objects frozen, DoFn method
    signatures cached while the block runs."""
    freeze_long_lived_objects()
    with dofn_signature_cache():
        yield


def exit_now(code: int) -> None:
    """Exits without interpreter teardown, where TensorFlow's function finalizers print spurious "Exception
    ignored" tracebacks and tensorflow-io's S3 client aborts the process (`beam_ml.core.s3`). All output is flushed
    first. The jobs and the commands that may reach a run or model on s3:// (step, push, infra, report) leave this
    way."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
