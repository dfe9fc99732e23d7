"""What every source's read emits: a `ParsedChunk` (one RecordBatch in the record layout, its dead letters and the
count of records read), and its coder.

Data contract: `records_read = batch.num_rows + len(dead_letters)`; `split` is set only by a pre-split input, whose
rows all belong to that split.
"""
from __future__ import annotations

import dataclasses
import pickle
from typing import Optional

import apache_beam as beam
import pyarrow as pa

from beam_ml.core.deadletter import DeadLetter


@dataclasses.dataclass
class ParsedChunk:
    """The rows of one chunk of a source, parsed."""

    batch: pa.RecordBatch
    dead_letters: list[DeadLetter]
    records_read: int  # non-empty lines seen = batch.num_rows + len(dead_letters)
    split: Optional[str] = None  # set by a pre-split input: every row of the chunk belongs to this split


class ParsedChunkCoder(beam.coders.Coder):
    """Pickles a chunk, as Beam's fallback coder does; estimates its size from the batch's buffers instead of
    pickling it (see `beam_ml.core.records.RecordBatchCoder`)."""

    def encode(self, parsed: ParsedChunk) -> bytes:
        return pickle.dumps(parsed, pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> ParsedChunk:
        return pickle.loads(encoded)

    def estimate_size(self, parsed: ParsedChunk) -> int:
        return parsed.batch.nbytes + sum(len(d.raw) for d in parsed.dead_letters)

    def to_type_hint(self):
        return ParsedChunk


beam.coders.registry.register_coder(ParsedChunk, ParsedChunkCoder)
