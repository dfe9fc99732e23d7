"""Validate with TFDV: statistics per split, a schema (inferred from train or given), anomalies and drift.

Data contract: `GenerateSplitStatistics` takes `PCollection[(split, pa.RecordBatch)]` and returns a singleton
`PCollection[DatasetFeatureStatisticsList]` per split, written where TFX writes it (`Split-<name>/FeatureStats.pb`).
Proto-in/proto-out logic (`make_schema`, `validate_split`, `anomaly_records`) is plain functions.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, NamedTuple, Optional, Sequence

import apache_beam as beam
from google.protobuf import text_format
import pyarrow as pa
import tensorflow_data_validation as tfdv
from tensorflow_data_validation.statistics import stats_impl
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from beam_ml.core import fileutil
from beam_ml.core.layout import ANOMALIES_FILE, STATS_FILE, RunLayout, split_dir
from beam_ml.core.records import use_record_batch_coder

use_record_batch_coder()  # importing TFDV registered its own coder for pa.RecordBatch


StatisticsBySplit = dict[str, beam.PCollection[statistics_pb2.DatasetFeatureStatisticsList]]


class GenerateSplitStatistics(beam.PTransform[beam.PCollection[tuple[str, pa.RecordBatch]], StatisticsBySplit]):
    """TFDV statistics of every split's RecordBatches, each also written to
    `<stats_dir>/Split-<split>/FeatureStats.pb` (TFX's layout).

    All splits go through one TFDV statistics subgraph keyed by split name (TFDV's sliced-statistics transform,
    which `tfdv.GenerateStatistics` wraps), instead of one subgraph per split: the statistics are the same and
    the graph is half the size, which matters because building and translating TFDV's graph is a large part of
    a small job's cost.

    Input: `PCollection[(split name, pa.RecordBatch)]` (`ReadSplits`'s `split_batches`). Output:
    `{split: PCollection[DatasetFeatureStatisticsList]}` (singletons, as `tfdv.GenerateStatistics` would give for
    that split alone; an empty dataset for a split without rows).

    Example::

        stats = ingested["split_batches"] | GenerateSplitStatistics(stats_dir, ("train", "eval"))
        train_stats = stats["train"]
    """

    def __init__(self, stats_dir: str, splits: Sequence[str], options: Optional[tfdv.StatsOptions] = None):
        super().__init__()
        self._stats_dir = stats_dir
        self._splits = tuple(splits)
        self._options = options or tfdv.StatsOptions()

    def expand(self, split_batches: beam.PCollection[tuple[str, pa.RecordBatch]]) -> StatisticsBySplit:
        with _no_hot_key_fanout() if _on_one_machine(split_batches.pipeline) else contextlib.nullcontext():
            sliced = split_batches | "Generate" >> stats_impl.GenerateSlicedStatisticsImpl(
                self._options, is_slicing_enabled=True)
        out = {}
        for name in self._splits:
            out[name] = sliced | f"Pick{name.title()}" >> beam.Map(split_statistics, name)
            # One small proto: written by a DoFn, not a file sink (whose many stages cost more than the write).
            _ = out[name] | f"Write{name.title()}" >> beam.Map(
                write_statistics, os.path.join(split_dir(self._stats_dir, name), STATS_FILE))
        return out


def _on_one_machine(pipeline: beam.Pipeline) -> bool:
    return type(pipeline.runner).__name__ in ("DirectRunner", "SwitchingDirectRunner", "BundleBasedDirectRunner",
                                              "FnApiRunner")


@contextlib.contextmanager
def _no_hot_key_fanout() -> Iterator[None]:
    """While TFDV's statistics graph is built, `CombinePerKey.with_hot_key_fanout` does nothing.

    TFDV fans each slice's combine out over 128 extra keys (its TODO b/162543416) so that no single worker of a
    distributed runner merges every accumulator of a big slice; it has no option to turn that off. On one machine
    there is nothing to spread, and the fanout only multiplies the accumulators (quantile sketches and more, per
    feature) that are built, pickled and merged: about 0.7 s of every local run (`benchmarks/ingest_stats.py`).
    Distributed runners keep TFDV's graph as it is.
    """
    fanout = beam.CombinePerKey.with_hot_key_fanout
    beam.CombinePerKey.with_hot_key_fanout = lambda self, unused_fanout: self
    try:
        yield
    finally:
        beam.CombinePerKey.with_hot_key_fanout = fanout


def write_statistics(stats: statistics_pb2.DatasetFeatureStatisticsList, path: str) -> str:
    """Writes the statistics as `tfdv.WriteStatisticsToBinaryFile` does (the serialized proto; read back with
    `tfdv.load_stats_binary`); returns the path."""
    fileutil.write_bytes(path, stats.SerializeToString())
    return path


def split_statistics(sliced: statistics_pb2.DatasetFeatureStatisticsList,
                     split: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """The statistics of one split out of the sliced result, unnamed as for an unsliced run (an empty dataset if
    the split had no rows, as TFDV gives for empty input)."""
    result = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = result.datasets.add()
    for candidate in sliced.datasets:
        if candidate.name == split:
            dataset.CopyFrom(candidate)
            dataset.ClearField("name")
    return result


def make_schema(train_stats: statistics_pb2.DatasetFeatureStatisticsList) -> schema_pb2.Schema:
    """The schema TFX's SchemaGen would infer from the train statistics."""
    return tfdv.infer_schema(train_stats, infer_feature_shape=False)


def with_drift_comparators(schema: schema_pb2.Schema, threshold: float) -> schema_pb2.Schema:
    """A copy of `schema` that checks every feature for drift: L-infinity distance for categorical (string)
    features, Jensen-Shannon divergence for numeric ones."""
    checked = schema_pb2.Schema()
    checked.CopyFrom(schema)
    for feature in checked.feature:
        if feature.type == schema_pb2.BYTES:
            feature.drift_comparator.infinity_norm.threshold = threshold
        else:
            feature.drift_comparator.jensen_shannon_divergence.threshold = threshold
    return checked


def validate_split(stats: statistics_pb2.DatasetFeatureStatisticsList, schema: schema_pb2.Schema,
                   drift_baseline: Optional[statistics_pb2.DatasetFeatureStatisticsList] = None,
                   drift_threshold: float = 0.3) -> anomalies_pb2.Anomalies:
    """Anomalies of one split against the schema, and drift against `drift_baseline` when given."""
    if drift_baseline is None:
        return tfdv.validate_statistics(stats, schema)
    return tfdv.validate_statistics(stats, with_drift_comparators(schema, drift_threshold),
                                    previous_statistics=drift_baseline)


def anomaly_records(split: str, anomalies: anomalies_pb2.Anomalies) -> list[dict]:
    """Flat, JSON-ready anomalies: [{split, feature, type, description}] sorted by feature."""
    records = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        kinds = sorted({anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason}) or ["UNKNOWN_TYPE"]
        records.append({"split": split, "feature": feature, "type": ",".join(kinds),
                        "description": info.description or info.short_description})
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        records.append({"split": split, "feature": "", "type": ",".join(
            sorted({anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason})),
            "description": info.description})
    return records


def read_schema(run_dir: str) -> schema_pb2.Schema:
    """The schema a run wrote (`WriteSchema`)."""
    return tfdv.load_schema_text(RunLayout(run_dir).schema_file)


def read_anomaly_records(run_dir: str, splits: Sequence[str]) -> list[dict]:
    """The flat anomaly records of the anomalies a run wrote (`ValidateSplit`), as `ValidateSplits` gives them."""
    records = []
    for split in splits:
        anomalies = text_format.Parse(fileutil.read_text(RunLayout(run_dir).anomalies_file(split)),
                                      anomalies_pb2.Anomalies())
        records.append(anomaly_records(split, anomalies))
    return _concat_lists(records)


def load_drift_baseline(path: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    return tfdv.load_stats_binary(path)


class WriteSchema(beam.DoFn):
    """Writes the schema as `schema.pbtxt`; passes it on."""

    def __init__(self, path: str):
        self._path = path

    def process(self, schema: schema_pb2.Schema):
        fileutil.write_text(self._path, str(schema))
        yield schema


class ValidateSplit(beam.DoFn):
    """Validates one split's statistics; writes the Anomalies text proto; emits the flat anomaly records."""

    def __init__(self, split: str, anomalies_dir: str,
                 drift_baseline: Optional[statistics_pb2.DatasetFeatureStatisticsList], drift_threshold: float):
        self._split = split
        self._path = os.path.join(split_dir(anomalies_dir, split), ANOMALIES_FILE)
        self._drift_baseline = drift_baseline
        self._drift_threshold = drift_threshold

    def process(self, stats, schema):
        anomalies = validate_split(stats, schema, self._drift_baseline, self._drift_threshold)
        fileutil.write_text(self._path, str(anomalies))
        yield anomaly_records(self._split, anomalies)


class Validation(NamedTuple):
    """What `ValidateSplits` gives: the schema (a singleton) and every split's anomalies (a singleton list of
    {split, feature, type, description})."""

    schema: beam.PCollection[schema_pb2.Schema]
    anomalies: beam.PCollection[list[dict]]


class ValidateSplits(beam.PTransform[StatisticsBySplit, Validation]):
    """Schema (given or inferred from train) and anomalies of every split; returns the flat anomaly records.

    Input: `{split: PCollection[DatasetFeatureStatisticsList]}` (singletons). Output: `Validation` with `schema`
    (singleton `Schema`) and `anomalies` (singleton list of {split, feature, type, description}). Drift is
    checked on the train split when `drift_baseline` is given.

    Example::

        out = {"train": train_stats, "eval": eval_stats} | ValidateSplits(run_dir, schema=None)
    """

    def __init__(self, output_dir: str, schema: Optional[schema_pb2.Schema] = None,
                 drift_baseline: Optional[statistics_pb2.DatasetFeatureStatisticsList] = None,
                 drift_threshold: float = 0.3):
        super().__init__()
        self._output_dir = output_dir
        self._schema = schema
        self._drift_baseline = drift_baseline
        self._drift_threshold = drift_threshold

    def expand(self, stats_by_split: StatisticsBySplit) -> Validation:
        pipeline = stats_by_split["train"].pipeline
        if self._schema is None:
            schema = stats_by_split["train"] | "InferSchema" >> beam.Map(make_schema)
        else:
            schema = pipeline | "GivenSchema" >> beam.Create([self._schema])
        schema = schema | "WriteSchema" >> beam.ParDo(
            WriteSchema(RunLayout(self._output_dir).schema_file))
        per_split = []
        for split, stats in sorted(stats_by_split.items()):
            per_split.append(stats | f"Validate{split.title()}" >> beam.ParDo(
                ValidateSplit(split, RunLayout(self._output_dir).anomalies,
                              self._drift_baseline if split == "train" else None, self._drift_threshold),
                schema=beam.pvalue.AsSingleton(schema)))
        anomalies = (per_split | "AllSplits" >> beam.Flatten()
                     | "Combine" >> beam.CombineGlobally(_concat_lists))
        return Validation(schema, anomalies)


def _concat_lists(lists) -> list:
    return sorted((item for items in lists for item in items), key=lambda r: (r["split"], r["feature"]))
