"""Sources: where records come from. Each resolves, when the graph is built, to its `RecordFormat`, a description
for the run manifest and a read transform that emits `ParsedChunk`s (a RecordBatch in the record layout, its dead
letters and the count of records read), so the rest of the pipeline does not care whether rows came from files, a
database or BigQuery.

Most sources are chunked: a list of small, picklable chunk descriptions (a byte range of a file, a Parquet row
group, a key range of a table) read in parallel, each by its own `chunk.parse(fmt)`.
"""
from __future__ import annotations

import abc
import queue
import threading
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

from beam_ml.csv_format import ParsedChunk
from beam_ml.records import RecordFormat


class Source(abc.ABC):
    """A dataset to read: `fmt`, `describe()` and `read()`."""

    fmt: RecordFormat

    @abc.abstractmethod
    def describe(self) -> list[dict[str, Any]]:
        """What is read, for the run manifest's `inputs`: paths with fingerprints, a masked DSN and query..."""

    @abc.abstractmethod
    def read(self) -> beam.PTransform:
        """`PBegin → PCollection[ParsedChunk]`."""


class ChunkedSource(Source):
    """A source read as independent chunks (each has `parse(fmt) -> Iterator[ParsedChunk]`)."""

    @abc.abstractmethod
    def chunks(self) -> list:
        """The units read in parallel."""

    def read(self) -> beam.PTransform:
        return ReadChunks(self.chunks(), self.fmt)


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


class ParseChunk(BackgroundDoFn):
    """Reads the chunks of any chunked source, in the background: reading and parsing a chunk overlap with the
    processing of the previous one's rows downstream."""

    def __init__(self, fmt: RecordFormat):
        self._fmt = fmt

    def work(self, chunk) -> Iterator[ParsedChunk]:
        return chunk.parse(self._fmt)


class ReadChunks(beam.PTransform):
    """The read of a chunked source: chunks spread over workers, each parsed into `ParsedChunk`s.

    Example::

        parsed = p | ReadChunks([RowGroup("data/a.parquet", 0), RowGroup("data/a.parquet", 1)], fmt)
    """

    def __init__(self, chunks: Sequence, fmt: RecordFormat):
        super().__init__()
        if not chunks:
            raise ValueError("no chunks to read")
        self._chunks = list(chunks)
        self._fmt = fmt

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        # Create already redistributes its elements (a Reshuffle whenever there are several).
        return (pbegin
                | "Chunks" >> beam.Create(self._chunks)
                | "Parse" >> beam.ParDo(ParseChunk(self._fmt)).with_output_types(ParsedChunk))


class SplitChunk:
    """A chunk of a pre-split input: its rows all belong to `split`."""

    def __init__(self, split: str, chunk):
        self.split = split
        self.chunk = chunk

    def parse(self, fmt: RecordFormat) -> Iterator[ParsedChunk]:
        for parsed in self.chunk.parse(fmt):
            parsed.split = self.split
            yield parsed


class PresplitSource(ChunkedSource):
    """Inputs already divided into splits, one chunked source per split (e.g. `train/*.csv`, `eval/*.csv`); all
    must have the same record format. Their rows keep their split: no hashing."""

    def __init__(self, sources: Mapping[str, ChunkedSource]):
        formats = {name: source.fmt for name, source in sources.items()}
        first = next(iter(formats))
        for name, fmt in formats.items():
            if fmt.columns != formats[first].columns or fmt.types != formats[first].types:
                raise ValueError(f"split {name!r} has columns {dict(zip(fmt.columns, fmt.types))}, split "
                                 f"{first!r} has {dict(zip(formats[first].columns, formats[first].types))}")
        self.fmt = formats[first]
        self.sources = dict(sources)

    def describe(self) -> list[dict[str, Any]]:
        return [{**entry, "split": name} for name, source in self.sources.items() for entry in source.describe()]

    def chunks(self) -> list:
        return [SplitChunk(name, chunk) for name, source in self.sources.items() for chunk in source.chunks()]
