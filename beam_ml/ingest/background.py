"""A DoFn whose work runs on a thread one element ahead (`BackgroundDoFn`): reading, parsing and hashing release the
GIL, so they overlap with the processing of the previous element downstream (ingest's parse and split steps).
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator, Optional

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

_DONE = object()  # after the last result of an element


class BackgroundMap:
    """Applies `fn` (an element → an iterator of results) to a DoFn's elements on a thread, one element ahead of
    the DoFn: while the thread works on an element, the results of the previous one are processed downstream. Where
    `fn` releases the GIL (reading, parsing, hashing), that uses another core of the machine.

    Results come out in the order of the elements, windowed as their element was, at most one element and one
    result ahead of the DoFn. Beam's metrics do not count on the thread: the DoFn updates them as results come out.
    """

    def __init__(self, fn: Callable[[Any], Iterable]):
        self._elements: queue.Queue = queue.Queue()
        self._results: queue.Queue = queue.Queue(maxsize=1)
        self._pending = 0  # elements whose results have not all come out
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def add(self, element, window, timestamp) -> Iterator[WindowedValue]:
        """Queues the element; yields the results of the earlier ones."""
        self._elements.put((element, WindowedValue(None, timestamp, [window])))
        self._pending += 1
        return self._results_until(1)

    def finish(self) -> Iterator[WindowedValue]:
        """Yields the remaining results; the thread ends."""
        self._elements.put(None)
        return self._results_until(0)

    def close(self) -> None:
        """Ends the thread without waiting for the results (a bundle that failed leaves them behind)."""
        self._elements.put(None)
        while self._thread.is_alive():
            try:
                self._results.get(timeout=0.1)
            except queue.Empty:
                pass

    def _results_until(self, pending: int) -> Iterator[WindowedValue]:
        while self._pending > pending:
            result = self._results.get()
            if result is _DONE:
                self._pending -= 1
            elif isinstance(result, BaseException):  # raised by `fn`
                raise result
            else:
                yield result

    def _run(self, fn: Callable[[Any], Iterable]) -> None:
        try:
            while (item := self._elements.get()) is not None:
                element, windowed = item
                for result in fn(element):
                    self._results.put(windowed.with_value(result))
                self._results.put(_DONE)
        except BaseException as e:  # raised in the DoFn's thread
            self._results.put(e)


class BackgroundDoFn(beam.DoFn):
    """A DoFn whose `work(element)` (→ an iterator of results) runs on a `BackgroundMap`, one element ahead;
    `emit(windowed result)` turns each result into outputs in the DoFn's thread (default: the result itself)."""

    _map: Optional[BackgroundMap] = None

    def work(self, element) -> Iterable:
        raise NotImplementedError

    def emit(self, windowed: WindowedValue) -> Iterator:
        yield windowed

    def start_bundle(self):
        self.teardown()  # the thread of a bundle that failed
        self._map = BackgroundMap(self.work)

    def process(self, element, window=beam.DoFn.WindowParam, timestamp=beam.DoFn.TimestampParam):
        for windowed in self._map.add(element, window, timestamp):
            yield from self.emit(windowed)

    def finish_bundle(self):
        for windowed in self._map.finish():
            yield from self.emit(windowed)
        self._map = None

    def teardown(self):
        if self._map is not None:
            self._map.close()
            self._map = None
