"""beam_ml.core.runtime: the DoFn signature cache for the local runner (same signatures as Beam's, computed once per
function, not keeping functions alive, undone on exit; a stateful streaming graph gives the same output with it)
and the garbage collector freeze (frozen objects are skipped, and collected once a later freeze unfreezes them)."""
from __future__ import annotations

import functools
import gc
import inspect
import weakref

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import core
from apache_beam.typehints import decorators

from beam_ml.core.runtime import (
    applies,
    cached_get_signature,
    dofn_signature_cache,
    freeze_long_lived_objects,
    local_run,
)
from beam_ml.core.windowing import Reading
from beam_ml.stream.order import WindowPerSensor


class _Fn(beam.DoFn):
    def process(self, element, timestamp=beam.DoFn.TimestampParam):
        yield element


def _plain(a, b=1, *rest, c, **more):
    return a


class _Unreferenceable:
    __slots__ = ()  # no __weakref__: cannot be a weak key

    def __call__(self, x, y=0):
        return x


def test_cached_signatures_equal_beams_and_are_computed_once_per_function():
    calls = []

    def original(func):
        calls.append(func)
        return decorators.get_signature(func)

    cached = cached_get_signature(original)
    fn = _Fn()
    lam = lambda x, y=2: x  # noqa: E731
    unreferenceable = _Unreferenceable()
    for func in (_plain, lam, fn.process, _Fn.process, len, functools.partial(_plain, 1), _Fn, unreferenceable):
        assert cached(func) == decorators.get_signature(func), func
        assert cached(func) == decorators.get_signature(func), func
    # a bound method is not its function: `self` is not a parameter of the bound one
    assert list(cached(fn.process).parameters)[0] == "element"
    assert list(cached(_Fn.process).parameters)[0] == "self"
    # computed once for each weakly referenceable callable; at every call for others
    assert calls.count(_plain) == 1 and calls.count(lam) == 1 and calls.count(len) == 1
    assert calls.count(unreferenceable) == 2
    # a new bound method object of the same function (as every bundle's fresh DoFn has) hits the cache
    assert cached(_Fn().process) is cached(fn.process)


def test_the_cache_does_not_keep_functions_alive():
    cached = cached_get_signature(decorators.get_signature)
    made = [eval("lambda v, w=3: v") for _ in range(3)]  # noqa: S307 - distinct function objects
    for fn in made:
        cached(fn)
    refs = [weakref.ref(fn) for fn in made]
    del made, fn
    gc.collect()
    assert all(ref() is None for ref in refs)


def test_the_cache_is_installed_in_beam_while_the_block_runs_and_removed_after():
    original = decorators.get_signature
    assert applies()  # the pinned Beam release is the one it was checked against
    with dofn_signature_cache() as on:
        assert on and getattr(core.get_signature, "beam_ml_cached", False)
        with dofn_signature_cache():  # nested: one cache
            installed = core.get_signature
        assert core.get_signature is installed
        assert core.get_function_args_defaults(_plain) == (["a", "b"], [1])
        assert inspect.signature(_plain) == core.get_signature(_plain)
    assert decorators.get_signature is original and core.get_signature is original
    try:
        with local_run():  # what beam_ml.launch.run gives a local run: both fixes
            assert getattr(core.get_signature, "beam_ml_cached", False) and gc.get_freeze_count() > 0
        assert core.get_signature is original
    finally:
        gc.unfreeze()


def test_a_stateful_streaming_graph_gives_the_same_windows_with_the_cache():
    def run() -> None:
        readings = [Reading("s", float(t), (float(t),)) for t in (3, 1, 2, 5, 4)]
        stream = TestStream().advance_watermark_to(0)
        for r in readings:
            stream = stream.add_elements([beam.window.TimestampedValue(("s", r), r.timestamp)])
        stream = stream.advance_watermark_to(100).advance_watermark_to_infinity()
        with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--streaming"])) as p:
            windows = (p | stream | WindowPerSensor(length=2, stride=1, allowed_lateness=1.0)).windows
            assert_that(windows | beam.Map(lambda w: w.timestamps),
                        equal_to([(1.0, 2.0), (2.0, 3.0), (3.0, 4.0), (4.0, 5.0)]))

    run()
    with dofn_signature_cache():
        run()


class _Cyclic:
    def __init__(self):
        self.me = self  # only the cycle collector can free it


def test_frozen_objects_leave_the_collectors_passes_but_a_later_freeze_still_collects_what_was_dropped():
    try:
        kept = _Cyclic()
        ref = weakref.ref(kept)
        freeze_long_lived_objects()
        assert gc.get_freeze_count() > 0
        del kept
        gc.collect()
        assert ref() is not None  # frozen: a full collection does not look at it
        freeze_long_lived_objects()  # e.g. after the next model version loaded: the replaced one is collected
        assert ref() is None
    finally:
        gc.unfreeze()
