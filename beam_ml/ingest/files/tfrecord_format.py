"""TFRecord files of tf.Example into the record layout: format inference from the first examples, and a reader that
decodes batches of serialized examples with tfx_bsl's C++ decoder (no per-row Python on the good path).

A record that is not a tf.Example, or whose feature has another kind than the column's type, is a dead letter with
its 1-based record number in the file (the `line` of the dead letter) and the decoder's reason.
"""
from __future__ import annotations

from typing import Iterator

import pyarrow as pa

from beam_ml.core import fileutil
from beam_ml.core.chunks import ParsedChunk
from beam_ml.core.deadletter import DeadLetter
from beam_ml.core.records import RecordFormat

_KINDS = {"int64_list": "int", "float_list": "float", "bytes_list": "string"}
_SAMPLE_RECORDS = 1000
BATCH_RECORDS = 8192


def compression(path: str) -> str:
    return "GZIP" if path.endswith(".gz") else ""


def _record_batches(path: str, size: int = BATCH_RECORDS) -> Iterator[list[bytes]]:
    """The file's serialized records, `size` at a time: tf.data batches them (no Python call per record) where
    TensorFlow has the file's filesystem, Beam's filesystems frame them one by one elsewhere (s3://)."""
    if not fileutil.tensorflow_reaches(path):
        yield from _beam_record_batches(path, size)
        return
    import tensorflow as tf
    for batch in tf.data.TFRecordDataset(path, compression_type=compression(path)).batch(size):
        yield batch.numpy().tolist()


def _beam_record_batches(path: str, size: int) -> Iterator[list[bytes]]:
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.io.tfrecordio import _TFRecordUtil  # Beam's framing and CRC checks (ReadFromTFRecord's own)
    kind = CompressionTypes.GZIP if compression(path) else CompressionTypes.UNCOMPRESSED
    with FileSystems.open(path, compression_type=kind) as f:
        batch: list[bytes] = []
        while (record := _TFRecordUtil.read_record(f)) is not None:
            batch.append(record)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch


def infer_tfrecord_format(path: str, column_types: dict[str, str]) -> RecordFormat:
    """Columns (in name order: a serialized Example's feature order is not fixed) of the first examples, typed by
    their feature kind (int64_list → int, float_list → float, bytes_list → string) unless `column_types` says
    otherwise."""
    import tensorflow as tf
    kinds: dict[str, str] = {}
    for record in next(_record_batches(path, _SAMPLE_RECORDS), []):
        try:
            example = tf.train.Example.FromString(record)
        except Exception:  # a bad record is a dead letter when read, not a reason to fail now
            continue
        for name, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            if kind and name not in kinds:
                kinds[name] = _KINDS[kind]
    columns = sorted(kinds)
    return RecordFormat(columns=tuple(columns), types=tuple(column_types.get(c) or kinds[c] for c in columns))


class _Decoder:
    def __init__(self, fmt: RecordFormat):
        self._schema_proto = fmt.tfmd_schema().SerializeToString()
        self._schema = fmt.arrow_schema()
        self._decoder = self._new()

    def _new(self):
        from tfx_bsl.coders import example_coder
        return example_coder.ExamplesToRecordBatchDecoder(self._schema_proto)

    def decode(self, records: list[bytes], path: str, first_number: int) -> ParsedChunk:
        try:
            batch = self._decoder.DecodeBatch(records)
            dead: list[DeadLetter] = []
        except RuntimeError:
            # A decoder that failed is left in a broken state: judge each record with a fresh one.
            good, dead = [], []
            for number, record in enumerate(records, start=first_number):
                try:
                    self._new().DecodeBatch([record])
                    good.append(record)
                except RuntimeError as e:
                    dead.append(DeadLetter(source=path, line=number, raw=record[:1000].hex(),
                                           reason=f"not a tf.Example of this format: {e}"))
            self._decoder = self._new()
            batch = self._decoder.DecodeBatch(good) if good else pa.RecordBatch.from_pylist([], schema=self._schema)
        batch = pa.RecordBatch.from_arrays([batch.column(name) for name in self._schema.names], schema=self._schema)
        return ParsedChunk(batch=batch, dead_letters=dead, records_read=batch.num_rows + len(dead))


def read_tfrecord_file(path: str, fmt: RecordFormat) -> Iterator[ParsedChunk]:
    """The file's records in batches of `BATCH_RECORDS`."""
    decoder = _Decoder(fmt)
    first = 1
    for records in _record_batches(path):
        yield decoder.decode(records, path, first)
        first += len(records)
