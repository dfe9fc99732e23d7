"""What every benchmark shares: the resampled taxi data, a peak-memory sampler, the environment line, and a
benchmark-only memoization of the local runner's per-bundle DoFn inspection."""
from __future__ import annotations

import contextlib
import os
import platform
import resource
import threading
from typing import Optional

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "chicago_taxi", "data.csv")


def build_csv(source: str, rows: int, path: str, seed: int = 0) -> None:
    """`rows` lines resampled with replacement from `source` (header kept), written once and reused."""
    if os.path.exists(path):
        with open(path, "rb") as f:
            if sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b"")) == rows + 1:
                return
    with open(source, "rb") as f:
        header, *lines = f.read().splitlines()
    picks = np.random.default_rng(seed).integers(0, len(lines), rows)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(header + b"\n")
        for start in range(0, rows, 100_000):
            f.write(b"\n".join(lines[i] for i in picks[start:start + 100_000]) + b"\n")
    os.replace(path + ".tmp", path)


class PeakTreeRss:
    """The peak RSS of a process plus its descendants (the multi-process runner's workers), sampled every 50 ms,
    with the timeline kept. Not ru_maxrss: Linux carries that over fork and exec, so a child would report its
    parent's peak."""

    def __init__(self, pid: Optional[int] = None, interval: float = 0.05):
        self.pid = pid or os.getpid()
        self.peak = 0
        self.samples: list[tuple[float, int]] = []  # (time.monotonic(), bytes)
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import time
        while not self._done.wait(self._interval):
            rss = tree_rss(self.pid)
            self.samples.append((time.monotonic(), rss))
            self.peak = max(self.peak, rss)

    def peak_between(self, start: float, end: float) -> int:
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)

    def peak_outside(self, start: float, end: float) -> int:
        return max((rss for t, rss in self.samples if not start <= t <= end), default=0)

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak


def tree_rss(pid: int) -> int:
    return sum(_rss(p) for p in [pid, *_descendants(pid)])


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return 0


def _descendants(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        return []
    return children + [d for c in children for d in _descendants(c)]


def environment(runner: str) -> str:
    """One line: machine, Python, runner and the versions that matter."""
    from beam_ml.core.run import package_versions
    versions = ", ".join(f"{k} {v}" for k, v in package_versions().items())
    return (f"machine: {platform.machine()}, {os.cpu_count()} cores, "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30:.0f} GiB, {platform.platform()}; "
            f"Python {platform.python_version()}; runner: {runner}\nversions: {versions}")


@contextlib.contextmanager
def memoized_dofn_inspection():
    """The local DirectRunner re-inspects every DoFn's methods (`inspect.signature`) and checks that the DoFn pickles
    for every bundle, which is most of its time on a per-reading stream (a bundle per reading): memoize the first per
    function and per DoFn class and skip the second while the replay runs. It changes no result (a function's
    signature and a DoFn class's state and timer specs do not change; the DoFns are pickled anyway).

    Benchmark-only: jobs get `beam_ml.core.runtime.dofn_signature_cache`, which caches signatures alone and keeps each
    bundle's fresh DoFn; on NAB's bundle-per-element replay that is 2.6× slower than this (benchmarks/README)."""
    from apache_beam.runners.direct import transform_evaluator
    from apache_beam.transforms import core, userstate
    from apache_beam.typehints import decorators

    original_signature, original_specs = decorators.get_signature, userstate.get_dofn_specs
    original_stateful = transform_evaluator.is_stateful_dofn
    original_init = transform_evaluator._ParDoEvaluator.__init__
    signatures, specs = {}, {}

    def get_signature(func):
        key = (getattr(func, "__func__", func), hasattr(func, "__self__"))
        try:
            return signatures[key]
        except TypeError:  # unhashable callable
            return original_signature(func)
        except KeyError:
            signatures[key] = original_signature(func)
            return signatures[key]

    def get_dofn_specs(dofn):
        if type(dofn) not in specs:
            specs[type(dofn)] = original_specs(dofn)
        return specs[type(dofn)]

    def is_stateful_dofn(dofn):
        state_specs, timer_specs = get_dofn_specs(dofn)
        return bool(state_specs or timer_specs)

    def init_without_pickle_test(self, *args, **kwargs):
        kwargs["perform_dofn_pickle_test"] = False  # the runner's per-bundle pickling check
        original_init(self, *args, **kwargs)

    decorators.get_signature = core.get_signature = get_signature
    transform_evaluator._ParDoEvaluator.__init__ = init_without_pickle_test
    userstate.get_dofn_specs = get_dofn_specs
    transform_evaluator.get_dofn_specs, transform_evaluator.is_stateful_dofn = get_dofn_specs, is_stateful_dofn
    try:
        yield
    finally:
        decorators.get_signature = core.get_signature = original_signature
        transform_evaluator._ParDoEvaluator.__init__ = original_init
        userstate.get_dofn_specs = original_specs
        transform_evaluator.get_dofn_specs, transform_evaluator.is_stateful_dofn = original_specs, original_stateful
