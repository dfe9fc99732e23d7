"""The counts sub-graph every job ends with: totals of named PCollections as one singleton dict, which the run
record carries (`read = splits + dead_letter`, `read = predicted + dead_letter`...).

Each PCollection is counted by a measure: `one` (1 per element), `rows` (a RecordBatch's rows) or `value` (the
element is itself a count, e.g. the records read per chunk).
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import apache_beam as beam
import pyarrow as pa

Measure = Callable[[Any], int]


def one(unused_element: Any) -> int:
    return 1


def rows(batch: pa.RecordBatch) -> int:
    return batch.num_rows


def value(count: int) -> int:
    return count


def measured(element: Any, name: str, measure: Measure) -> tuple[str, int]:
    return name, measure(element)


def with_zeros(totals: dict[str, int], names: tuple[str, ...]) -> dict[str, int]:
    """Every name's total, 0 for those whose PCollection was empty."""
    return {name: totals.get(name, 0) for name in names}


def step_label(name: str) -> str:
    """A static CapWords step label for a count's name (`split:train` → `SplitTrain`)."""
    return "".join(part.title() for part in re.split(r"[^A-Za-z0-9]+", name) if part)


class CountTotals(beam.PTransform[Mapping[str, beam.PCollection], beam.PCollection[dict[str, int]]]):
    """Totals of named PCollections as one singleton `{name: total}` (every name present, 0 for an empty one).

    Example::

        counts = ({"read": ingested.records_read, "dead_letter": ingested.dead_letter}
                  | CountTotals({"read": value, "dead_letter": one}))

    Args:
      measures: each name's measure (`one`, `rows`, `value` or another picklable function of an element).
    """

    def __init__(self, measures: Mapping[str, Measure]):
        super().__init__()
        if not measures:
            raise ValueError("measures is empty")
        self._measures = dict(measures)

    def expand(self, collections: Mapping[str, beam.PCollection]) -> beam.PCollection[dict[str, int]]:
        if set(collections) != set(self._measures):
            raise ValueError(f"counts {sorted(collections)} differ from the measures {sorted(self._measures)}")
        keyed = [collections[name] | f"Key{step_label(name)}" >> beam.Map(measured, name, measure)
                 for name, measure in self._measures.items()]
        return (keyed
                | "AllCounts" >> beam.Flatten()
                | "SumCounts" >> beam.CombinePerKey(sum)
                | "CountsToDict" >> beam.combiners.ToDict()
                | "WithZeros" >> beam.Map(with_zeros, tuple(self._measures)))
