"""Ingest: any source (`beam_ml.ingest.source.Source`: files, a database, BigQuery) → Arrow RecordBatches per split
(`ReadSplits`), plus dead letters and the count of records read.

Data contract: `ReadSplits(source, split)`: PBegin → `Ingested(split_batches: PCollection[(split name,
pa.RecordBatch)]` (what TFDV's sliced statistics consume), `splits: {name: PCollection[pa.RecordBatch]}` (the same
batches, one PCollection per split), `dead_letter: PCollection[DeadLetter]`, `records_read: PCollection[int]` (one
count per chunk)`)`. Every record read is in a split or a dead letter: `sum(records_read) = rows in splits +
dead letters`.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from beam_ml.core.chunks import ParsedChunk
from beam_ml.core.deadletter import DEAD_LETTER, DeadLetter
from beam_ml.core.records import without_non_finite
from beam_ml.ingest.background import BackgroundDoFn
from beam_ml.ingest.source import Source
from beam_ml.ingest.split import Split

# The SplitRows step's other output tags (and `DEAD_LETTER`).
RECORDS_READ, SPLIT_BATCHES = "records_read", "split_batches"


class Ingested(NamedTuple):
    """What `ReadSplits` gives (see the module docstring)."""

    split_batches: beam.PCollection[tuple[str, pa.RecordBatch]]
    splits: dict[str, beam.PCollection[pa.RecordBatch]]
    dead_letter: beam.PCollection[DeadLetter]
    records_read: beam.PCollection[int]


class SplitRows(BackgroundDoFn):
    """Assigns the rows of each parsed chunk to splits; emits (split name, batch) pairs, and dead letters and the
    read count as tagged outputs. Rows the split cannot place (`partition` names them None) and rows with an
    infinite or NaN float (`without_non_finite`) become dead letters.
    The split (hashing, filtering) runs in the background, overlapping with the statistics downstream."""

    def __init__(self, split: Split, allow_non_finite: Sequence[str] = ()):
        self._split = split
        self._allow_non_finite = tuple(allow_non_finite)
        self._rows = Metrics.counter("ingest", "rows_parsed")
        self._dead = Metrics.counter("ingest", "dead_letters")

    def work(self, parsed: ParsedChunk) -> Iterator[tuple]:
        """One (parsed chunk, [(split name, batch)], dead letters)."""
        batch, non_finite = without_non_finite(parsed.batch, self._allow_non_finite)
        dead_letters = list(parsed.dead_letters) + non_finite
        if parsed.split is not None:
            parts = [(parsed.split, batch)] if batch.num_rows else []
        else:
            parts = list(self._split.partition(batch)) if batch.num_rows else []
        for name, batch in parts:
            if name is None:
                dead_letters.extend(self._split.dead_letters(batch))
        yield parsed, [(name, batch) for name, batch in parts if name is not None], dead_letters

    def emit(self, windowed) -> Iterator:
        parsed, parts, dead_letters = windowed.value
        self._rows.inc(parsed.batch.num_rows)
        yield beam.pvalue.TaggedOutput(RECORDS_READ, windowed.with_value(parsed.records_read))
        for part in parts:
            yield windowed.with_value(part)
        self._dead.inc(len(dead_letters))
        for dead_letter in dead_letters:
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, windowed.with_value(dead_letter))


class ReadSplits(beam.PTransform[beam.pvalue.PBegin, Ingested]):
    """Reads any source into RecordBatches per split, with dead letters and read counts.

    Example::

        source = FileSource.resolve("data/*.parquet", column_types={})
        out = p | ReadSplits(source, HashSplit((("train", 2), ("eval", 1))))
        train_batches, dead_letters, keyed = out.splits["train"], out.dead_letter, out.split_batches

    Args:
      source: a `Source` (files, a database, BigQuery...): its record format and read transform.
      split: how rows are assigned to named splits (a `Split`: `HashSplit`, `TimeSplit`, `AllRows`); a pre-split
        source's chunks carry their split instead (`GivenSplit`).
      allow_non_finite: float columns whose infinite or NaN values are kept (elsewhere their rows are dead letters).
    """

    def __init__(self, source: Source, split: Split, allow_non_finite: Sequence[str] = ()):
        super().__init__()
        split.check(source.fmt)
        self._source = source
        self._split = split
        self._allow_non_finite = tuple(allow_non_finite)

    def expand(self, pbegin: beam.pvalue.PBegin) -> Ingested:
        # Typed, so that the batches get `RecordBatchCoder` rather than pickling.
        outputs = (pbegin
                   | "Read" >> self._source.read()
                   | "SplitRows" >> beam.ParDo(SplitRows(self._split, self._allow_non_finite)).with_output_types(
                       tuple[str, pa.RecordBatch]).with_outputs(RECORDS_READ, DEAD_LETTER, main=SPLIT_BATCHES))
        # A filter per split, not one tagged output per split: FnApiRunner materializes a Flatten, and the
        # statistics step wants all splits in one keyed collection.
        splits = {name: outputs[SPLIT_BATCHES] | f"Batches{name.title()}" >> beam.FlatMap(
            batches_of, name).with_output_types(pa.RecordBatch) for name in self._split.names}
        return Ingested(outputs[SPLIT_BATCHES], splits, outputs[DEAD_LETTER], outputs[RECORDS_READ])


def batches_of(keyed_batch: tuple[str, pa.RecordBatch], split: str) -> Iterator[pa.RecordBatch]:
    """The batch of a (split name, batch) pair if it belongs to `split`."""
    if keyed_batch[0] == split:
        yield keyed_batch[1]
