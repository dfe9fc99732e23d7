"""What `--validate_only` checks on real data before a run is launched: a sample read through the real parser, the
columns whose inferred type was decided by a few odd values, and the user's `preprocessing_fn` run (analyze and
transform, with tf.Transform on an in-process pipeline) on that sample, with the label among its outputs.

A `preprocessing_fn` that drops the label, or fails on real rows, is named here in seconds instead of deep inside
tf.Transform or training. Window models (`window_key`) get the sample and type checks only: their
`preprocessing_fn` takes windows, which need a whole key's rows.
"""
from __future__ import annotations

import functools
import os
import tempfile
from typing import Any, Callable, Optional, Sequence

import apache_beam as beam
import pyarrow as pa

from beam_ml.core.errors import ConfigError
from beam_ml.core.records import RecordFormat, without_non_finite
from beam_ml.core.redact import clipped
from beam_ml.ingest.source import ChunkedSource, Source

SAMPLE_ROWS = 1000


def sample_rows(source: Source, allow_non_finite: Sequence[str] = (),
                limit: int = SAMPLE_ROWS) -> Optional[tuple[pa.RecordBatch, int]]:
    """Up to `limit` rows of the source's first chunk as the job would parse them, and how many records of that
    chunk were dead letters; None for a source read other than in chunks (BigQuery)."""
    if not isinstance(source, ChunkedSource):
        return None
    rows, count, dead = [], 0, 0
    for chunk in source.chunks():
        for parsed in chunk.parse(source.fmt):
            batch, non_finite = without_non_finite(parsed.batch, allow_non_finite)
            dead += len(parsed.dead_letters) + len(non_finite)
            rows.append(batch)
            count += batch.num_rows
            if count >= limit:
                break
        if count >= limit:
            break
    if not rows:
        return None
    table = pa.Table.from_batches(rows).slice(0, limit).combine_chunks()
    batches = table.to_batches()
    return (batches[0] if batches else rows[0].slice(0, 0)), dead


@functools.lru_cache(maxsize=8)
def transformed_features(preprocessing_fn: Callable, fmt: RecordFormat, batch_bytes: bytes) -> tuple[str, ...]:
    """Runs `preprocessing_fn` (analyze, then transform) on the sample (an Arrow IPC stream) on an in-process
    pipeline; returns the names of its outputs. Exceptions are the preprocessing_fn's own."""
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam

    from beam_ml.train.transform import tensor_adapter_config
    batch = pa.ipc.open_stream(batch_bytes).read_next_batch()
    with tempfile.TemporaryDirectory(prefix="beam_ml_preflight_") as temp:
        with beam.Pipeline(runner="DirectRunner") as p, tft_beam.Context(temp_dir=os.path.join(temp, "tmp")):
            (transformed, _), transform_fn = (
                (p | beam.Create([batch]), tensor_adapter_config(fmt))
                | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn, output_record_batches=True))
            _ = transformed | beam.Map(lambda element: element[0].num_rows)  # the transform runs on every row
            _ = transform_fn | tft_beam.WriteTransformFn(os.path.join(temp, "transform"))
        return tuple(sorted(tft.TFTransformOutput(os.path.join(temp, "transform")).transformed_feature_spec()))


def _ipc(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def preflight(source: Source, label: str, preprocessing_fn: Callable, fixed_types: dict[str, str],
              windowed: bool, allow_non_finite: Sequence[str] = ()) -> dict[str, Any]:
    """The sample checks: {"sample_rows", "sample_dead_letters", "type_doubts", "transformed_features"}. Raises
    ConfigError naming --module when the preprocessing_fn fails on the sample or drops the label."""
    sample = sample_rows(source, allow_non_finite)
    inferred = [c for c in source.fmt.columns if c not in fixed_types]
    report: dict[str, Any] = {
        "sample_rows": None if sample is None else sample[0].num_rows,
        "sample_dead_letters": None if sample is None else sample[1],
        "type_doubts": source.type_doubts(inferred),
        "transformed_features": None}
    if sample is None or windowed or sample[0].num_rows == 0:
        return report
    try:
        outputs = transformed_features(preprocessing_fn, source.fmt, _ipc(sample[0]))
    except Exception as e:
        raise ConfigError("module", f"preprocessing_fn fails on a sample of {sample[0].num_rows} rows: "
                                    f"{type(e).__name__}: {clipped(str(e), 2000)}") from None
    if label not in outputs:
        raise ConfigError("module", f"preprocessing_fn does not output the label {label!r} (its outputs: "
                                    f"{', '.join(outputs)}); return it, transformed or as is, under that name")
    report["transformed_features"] = list(outputs)
    return report
