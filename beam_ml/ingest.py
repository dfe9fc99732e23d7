"""Ingest: files (a glob of CSV, JSON Lines, Parquet or TFRecord) → Arrow RecordBatches per split, plus dead
letters and the count of records read.

The file kind comes from the extension (`.parquet`/`.pq`, `.jsonl`/`.ndjson`/`.json`, `.tfrecord[s][.gz]` of
tf.Example; anything else is CSV); one glob holds one kind. Output of `ReadSplits`: a dict with `"split_batches"`
(`PCollection[(split name, pa.RecordBatch)]`, what TFDV's sliced statistics consume), the same batches as one
`PCollection[pa.RecordBatch]` per split name, `"dead_letter"` (`PCollection[DeadLetter]`) and `"records_read"`
(`PCollection[int]`, one count per chunk). Text files are cut into byte-range chunks (a chunk owns the lines that
start inside it) so large files parse in parallel and in large batches (a CSV header is checked once per file);
Parquet files are read a row group at a time; a TFRecord file is read whole, in batches of records.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Iterator, Sequence, Union

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_ml.csv_format import ParsedChunk, infer_csv_format, parse_csv_chunk, parse_header
from beam_ml.jsonl_format import infer_jsonl_format, parse_jsonl_chunk
from beam_ml.parquet_format import infer_parquet_format, read_row_group, row_group_count
from beam_ml.records import RecordFormat
from beam_ml.tfrecord_format import infer_tfrecord_format, read_tfrecord_file
from beam_ml.split import HashSplit

DEAD_LETTER = "dead_letter"
RECORDS_READ = "records_read"
SPLIT_BATCHES = "split_batches"
_READ_BLOCK = 1 << 20
_SAMPLE_BYTES = 8 << 20
_UTF8_BOM = b"\xef\xbb\xbf"  # spreadsheet exports start with it; it is not part of the first column's name


KINDS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl",
         ".json": "jsonl", ".tfrecord": "tfrecord", ".tfrecords": "tfrecord"}


def file_kind(path: str) -> str:
    """'csv' | 'jsonl' | 'parquet' | 'tfrecord', from the extension (a `.gz` after `.tfrecord` means GZIP); CSV
    when it is none of these."""
    name = path.lower().removesuffix(".gz") if ".tfrecord" in path.lower() else path.lower()
    return KINDS.get(os.path.splitext(name)[1], "csv")


@dataclasses.dataclass(frozen=True)
class InputFile:
    path: str
    size: int
    sha256: str
    kind: str = "csv"


@dataclasses.dataclass(frozen=True)
class ByteRange:
    """The lines of a text file (CSV or JSON Lines) that start in the byte range [start, end)."""

    path: str
    start: int
    end: int
    kind: str = "csv"

    def parse(self, fmt: RecordFormat) -> Iterator[ParsedChunk]:
        data, begin, at_file_start = read_chunk(self)
        if at_file_start and self.kind == "csv":
            header, _, data = data.partition(b"\n")
            columns = parse_header(header.removeprefix(_UTF8_BOM), fmt.delimiter)
            if columns != fmt.columns:
                raise ValueError(f"{self.path}: header columns {columns} differ from those the job was built "
                                 f"with ({fmt.columns})")
            begin += len(header) + 1
        elif at_file_start:
            data = data.removeprefix(_UTF8_BOM)
        parse = parse_csv_chunk if self.kind == "csv" else parse_jsonl_chunk
        yield parse(data, fmt, self.path, lambda: count_lines_before(self.path, begin) + 1)


@dataclasses.dataclass(frozen=True)
class RowGroup:
    """One row group of a Parquet file."""

    path: str
    index: int

    def parse(self, fmt: RecordFormat) -> Iterator[ParsedChunk]:
        yield read_row_group(self.path, self.index, fmt)


@dataclasses.dataclass(frozen=True)
class RecordFile:
    """A whole TFRecord file (record boundaries are only found by reading), parsed in batches of records."""

    path: str

    def parse(self, fmt: RecordFormat) -> Iterator[ParsedChunk]:
        return read_tfrecord_file(self.path, fmt)


def plan_chunks(file: InputFile, chunk_bytes: int) -> list:
    """The units read in parallel: row groups of a Parquet file, a whole TFRecord file, byte ranges of a text
    file."""
    if file.kind == "parquet":
        return [RowGroup(file.path, i) for i in range(row_group_count(file.path))]
    if file.kind == "tfrecord":
        return [RecordFile(file.path)]
    return [ByteRange(file.path, start, min(start + chunk_bytes, file.size), file.kind)
            for start in range(0, max(file.size, 1), chunk_bytes)]


def _open(path: str):
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_header(path: str) -> bytes:
    with _open(path) as f:
        head = b""
        while b"\n" not in head:
            block = f.read(_READ_BLOCK)
            if not block:
                break
            head += block
    return head.split(b"\n", 1)[0].rstrip(b"\r").removeprefix(_UTF8_BOM)


def read_chunk(chunk: ByteRange) -> tuple[bytes, int, bool]:
    """The bytes of the chunk's whole lines, the offset they start at, and whether they start with the header."""
    with _open(chunk.path) as f:
        begin = chunk.start
        if begin > 0:
            f.seek(begin - 1)
            if f.read(1) != b"\n":  # mid-line: this line belongs to the previous chunk
                rest = _read_to_newline(f)
                begin += len(rest)
        f.seek(begin)
        data = f.read(max(chunk.end - begin, 0)) if begin < chunk.end else b""
        if data and not data.endswith(b"\n"):
            data += _read_to_newline(f)
    return data, begin, chunk.start == 0


def _read_to_newline(f) -> bytes:
    out = b""
    while True:
        block = f.read(64 << 10)
        if not block:
            return out
        cut = block.find(b"\n")
        if cut >= 0:
            return out + block[: cut + 1]
        out += block


def count_lines_before(path: str, offset: int) -> int:
    count = 0
    with _open(path) as f:
        remaining = offset
        while remaining > 0:
            block = f.read(min(_READ_BLOCK, remaining))
            if not block:
                break
            count += block.count(b"\n")
            remaining -= len(block)
    return count


def resolve_files(pattern: Union[str, Sequence[str]],
                  column_types: dict[str, str]) -> tuple[list[InputFile], RecordFormat]:
    """Matches the glob(s) and works out the record format from the files, when the graph is built: CSV headers
    (all must agree) and a type sample, a JSON Lines sample, or every Parquet file's schema.

    Raises ValueError for no files, mixed kinds, differing headers or schemas, or no data rows in any file.
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    paths = sorted({m.path for result in FileSystems.match(patterns) for m in result.metadata_list})
    if not paths:
        raise ValueError(f"{pattern!r} matches no files")
    kinds = {file_kind(p) for p in paths}
    if len(kinds) > 1:
        raise ValueError(f"{pattern!r} matches files of several kinds ({', '.join(sorted(kinds))}); use one glob "
                         f"per kind")
    kind = kinds.pop()
    files = [InputFile(p, *_size_and_sha256(p), kind=kind) for p in paths]
    if kind == "parquet":
        fmt = infer_parquet_format(paths, column_types)
        empty = all(row_group_count(p) == 0 for p in paths)
    elif kind == "tfrecord":
        fmt = infer_tfrecord_format(paths[0], column_types)
        empty = not fmt.columns
    elif kind == "jsonl":
        with _open(paths[0]) as f:
            sample = f.read(_SAMPLE_BYTES).removeprefix(_UTF8_BOM)
        fmt = infer_jsonl_format(sample, column_types)
        empty = not fmt.columns
    else:
        headers = {p: read_header(p) for p in paths}
        first = paths[0]
        for path in paths[1:]:
            if headers[path] != headers[first]:
                raise ValueError(f"header of {path} differs from {first}: {headers[path]!r} vs {headers[first]!r}")
        with _open(first) as f:
            sample = f.read(_SAMPLE_BYTES)
        fmt = infer_csv_format(headers[first], sample.split(b"\n", 1)[1] if b"\n" in sample else b"", column_types)
        empty = all(f.size <= len(headers[f.path]) + 2 for f in files)
    if empty:
        raise ValueError(f"{pattern!r}: {len(files)} file(s) but no data rows")
    return files, fmt


def _size_and_sha256(path: str) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with _open(path) as f:
        for block in iter(lambda: f.read(_READ_BLOCK), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


class ParseAndSplit(beam.DoFn):
    """Parses one chunk, splits its rows by hash; emits (split name, batch) pairs, and dead letters and the read
    count as tagged outputs."""

    def __init__(self, fmt: RecordFormat, split: HashSplit):
        self._fmt = fmt
        self._split = split
        self._rows = Metrics.counter("ingest", "rows_parsed")
        self._dead = Metrics.counter("ingest", "dead_letters")

    def process(self, chunk) -> Iterator:
        """`chunk`: a `ByteRange`, a `RowGroup` or a `RecordFile`."""
        for parsed in chunk.parse(self._fmt):
            self._rows.inc(parsed.batch.num_rows)
            self._dead.inc(len(parsed.dead_letters))
            yield beam.pvalue.TaggedOutput(RECORDS_READ, parsed.records_read)
            for dead_letter in parsed.dead_letters:
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter)
            if parsed.batch.num_rows:
                yield from self._split.partition(parsed.batch)


class ReadSplits(beam.PTransform):
    """Reads CSV, JSON Lines, Parquet or TFRecord files into RecordBatches per split, with dead letters and read counts.

    Example::

        files, fmt = resolve_files("data/*.parquet", column_types={})
        out = p | ReadSplits(files, fmt, HashSplit((("train", 2), ("eval", 1))))
        train_batches, dead_letters, keyed = out["train"], out["dead_letter"], out["split_batches"]

    Args:
      files: the files to read, with their sizes (resolved when the graph is built and recorded in the run
        manifest; not globbed again, so names with glob characters are read as they are).
      fmt: their columns and types.
      split: how rows are assigned to named splits.
      chunk_bytes: bytes of a text file parsed into one RecordBatch (a Parquet row group is one batch).
    """

    def __init__(self, files: Sequence[InputFile], fmt: RecordFormat, split: HashSplit, chunk_bytes: int = 8 << 20):
        super().__init__()
        if not files:
            raise ValueError("files is empty")
        if split.key is not None and split.key not in fmt.columns:
            raise ValueError(f"split key {split.key!r} is not a column ({', '.join(fmt.columns)})")
        if split.key is not None and fmt.type_of(split.key) == "float":
            raise ValueError(f"split key {split.key!r} is a float column; hash an int or string column")
        self._chunks = [c for f in files for c in plan_chunks(f, chunk_bytes)]
        self._fmt = fmt
        self._split = split

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        outputs = (pbegin
                   | "Chunks" >> beam.Create(self._chunks)
                   | "Distribute" >> beam.Reshuffle()
                   | "ParseAndSplit" >> beam.ParDo(ParseAndSplit(self._fmt, self._split)).with_outputs(
                       RECORDS_READ, DEAD_LETTER, main=SPLIT_BATCHES))
        names = self._split.names
        # Partition, not one tagged output per split: FnApiRunner materializes a Flatten, and the statistics
        # step wants all splits in one keyed collection.
        by_split = outputs[SPLIT_BATCHES] | "BySplit" >> beam.Partition(_split_index, len(names), names)
        return {SPLIT_BATCHES: outputs[SPLIT_BATCHES], RECORDS_READ: outputs[RECORDS_READ],
                DEAD_LETTER: outputs[DEAD_LETTER],
                **{name: by_split[i] | f"Batches{name.title()}" >> beam.Values() for i, name in enumerate(names)}}


def _split_index(keyed_batch: tuple, num_partitions: int, names: tuple[str, ...]) -> int:
    return names.index(keyed_batch[0])
