"""Sources: where records come from. Each resolves, when the graph is built, to its `RecordFormat`, a description
for the run manifest and a read transform that emits `ParsedChunk`s (a RecordBatch in the record layout, its dead
letters and the count of records read), so the rest of the pipeline does not care whether rows came from files, a
database or BigQuery.

Most sources are chunked: a list of small, picklable chunk descriptions (a byte range of a file, a Parquet row
group, a key range of a table) read in parallel, each by its own `chunk.parse(fmt)`.
"""
from __future__ import annotations

import abc
from typing import Any, Iterator, Mapping, Sequence

import apache_beam as beam

from beam_ml.core.chunks import ParsedChunk
from beam_ml.core.records import RecordFormat
from beam_ml.ingest.background import BackgroundDoFn


class Source(abc.ABC):
    """A dataset to read: `fmt`, `describe()` and `read()`."""

    fmt: RecordFormat

    @abc.abstractmethod
    def describe(self) -> list[dict[str, Any]]:
        """What is read, for the run manifest's `inputs`: paths with fingerprints, a masked DSN and query..."""

    @abc.abstractmethod
    def read(self) -> beam.PTransform:
        """`PBegin → PCollection[ParsedChunk]`."""

    def type_doubts(self, inferred: Sequence[str]) -> list[dict[str, Any]]:
        """Columns among `inferred` whose inferred type a few odd values decided (for `--validate_only`); sources
        whose types come from the data store's own schema have none."""
        return []


class ChunkedSource(Source):
    """A source read as independent chunks (each has `parse(fmt) -> Iterator[ParsedChunk]`)."""

    @abc.abstractmethod
    def chunks(self) -> list:
        """The units read in parallel."""

    def read(self) -> beam.PTransform:
        return ReadChunks(self.chunks(), self.fmt)


class ParseChunk(BackgroundDoFn):
    """Reads the chunks of any chunked source, in the background: reading and parsing a chunk overlap with the
    processing of the previous one's rows downstream."""

    def __init__(self, fmt: RecordFormat):
        self._fmt = fmt

    def work(self, chunk) -> Iterator[ParsedChunk]:
        return chunk.parse(self._fmt)


class ReadChunks(beam.PTransform[beam.pvalue.PBegin, beam.PCollection[ParsedChunk]]):
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

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[ParsedChunk]:
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
