"""Leakage check: key values (a user, a patient, a device) that occur in more than one split.

A hash split on that key (`split_key`) never leaks; a whole-record split, or a key other than the split key, can:
the same user's rows in train and eval flatter the eval metrics. The check reports how many key values occur in
several splits, with a few examples; it does not stop the run.
"""
from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

MAX_EXAMPLES = 10


def keys_by_split(keyed_batch: tuple[str, pa.RecordBatch], key: str) -> Iterator[tuple[Any, str]]:
    """(key value, split) once per distinct present key value of the batch."""
    split, batch = keyed_batch
    values = pc.list_flatten(batch.column(key))
    for value in pc.unique(values).to_pylist():
        yield (value.decode("utf-8", "replace") if isinstance(value, bytes) else value), split


def _as_list(key: Any, splits) -> tuple[Any, list[str]]:
    return key, list(splits)


def leakage_record(splits_by_key: list[tuple[Any, list[str]]], key: str) -> dict:
    leaking = sorted((k, sorted(set(s))) for k, s in splits_by_key if len(set(s)) > 1)
    return {"key": key, "keys_in_several_splits": len(leaking),
            "examples": [{"value": k, "splits": s} for k, s in leaking[:MAX_EXAMPLES]]}


class CheckLeakage(beam.PTransform[beam.PCollection[tuple[str, pa.RecordBatch]], beam.PCollection[dict]]):
    """Counts the values of `key` that occur in more than one split.

    Input: `PCollection[(split, RecordBatch)]` (ingest's `split_batches`). Output: a singleton
    `{"key", "keys_in_several_splits", "examples": [{"value", "splits"}]}`.

    Example::

        leakage = ingested["split_batches"] | CheckLeakage("user_id")
    """

    def __init__(self, key: str):
        super().__init__()
        self._key = key

    def expand(self, split_batches: beam.PCollection[tuple[str, pa.RecordBatch]]) -> beam.PCollection[dict]:
        return (split_batches
                | "KeysBySplit" >> beam.FlatMap(keys_by_split, self._key)
                | "Distinct" >> beam.Distinct()
                | "GroupByKey" >> beam.GroupByKey()
                | "SplitLists" >> beam.MapTuple(_as_list)
                | "All" >> beam.combiners.ToList()
                | "Record" >> beam.Map(leakage_record, self._key))
