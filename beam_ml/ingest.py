"""Ingest: CSV files (a glob) → Arrow RecordBatches per split, plus dead letters and the count of records read.

Output of `ReadCsvSplits`: a dict with `"split_batches"` (`PCollection[(split name, pa.RecordBatch)]`, what
TFDV's sliced statistics consume), the same batches as one `PCollection[pa.RecordBatch]` per split name,
`"dead_letter"` (`PCollection[DeadLetter]`) and `"records_read"` (`PCollection[int]`, one count per chunk). Files are
cut into byte-range chunks (a chunk owns the lines that start inside it) so large files parse in parallel and in large
batches; the header is checked once per file.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Iterator, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_ml.csv_format import infer_csv_format, parse_csv_chunk, parse_header
from beam_ml.records import RecordFormat
from beam_ml.split import HashSplit

DEAD_LETTER = "dead_letter"
RECORDS_READ = "records_read"
SPLIT_BATCHES = "split_batches"
_READ_BLOCK = 1 << 20
_SAMPLE_BYTES = 8 << 20
_UTF8_BOM = b"\xef\xbb\xbf"  # spreadsheet exports start with it; it is not part of the first column's name


@dataclasses.dataclass(frozen=True)
class CsvChunk:
    """The lines of `path` that start in the byte range [start, end)."""

    path: str
    start: int
    end: int


@dataclasses.dataclass(frozen=True)
class InputFile:
    path: str
    size: int
    sha256: str


def plan_chunks(path: str, size: int, chunk_bytes: int) -> list[CsvChunk]:
    return [CsvChunk(path, start, min(start + chunk_bytes, size)) for start in range(0, max(size, 1), chunk_bytes)]


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


def read_chunk(chunk: CsvChunk) -> tuple[bytes, int, bool]:
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


def resolve_csv_input(pattern: str, column_types: dict[str, str]) -> tuple[list[InputFile], RecordFormat]:
    """Matches the glob and reads headers (all must agree) and a type sample, when the graph is built.

    Raises ValueError for no files, differing headers, or no data rows in any file.
    """
    matches = FileSystems.match([pattern])[0].metadata_list
    if not matches:
        raise ValueError(f"{pattern!r} matches no files")
    paths = sorted(m.path for m in matches)
    headers = {p: read_header(p) for p in paths}
    first = paths[0]
    for path in paths[1:]:
        if headers[path] != headers[first]:
            raise ValueError(f"header of {path} differs from {first}: {headers[path]!r} vs {headers[first]!r}")
    with _open(first) as f:
        sample = f.read(_SAMPLE_BYTES)
    fmt = infer_csv_format(headers[first], sample.split(b"\n", 1)[1] if b"\n" in sample else b"", column_types)
    files = [InputFile(p, *_size_and_sha256(p)) for p in paths]
    if all(f.size <= len(headers[f.path]) + 2 for f in files):
        raise ValueError(f"{pattern!r}: {len(files)} file(s) but no data rows, only headers")
    return files, fmt


def _size_and_sha256(path: str) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with _open(path) as f:
        for block in iter(lambda: f.read(_READ_BLOCK), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


class ParseAndSplitCsvChunk(beam.DoFn):
    """Parses one chunk, splits its rows by hash; emits (split name, batch) pairs, and dead letters and the read
    count as tagged outputs."""

    def __init__(self, fmt: RecordFormat, split: HashSplit):
        self._fmt = fmt
        self._split = split
        self._rows = Metrics.counter("ingest", "rows_parsed")
        self._dead = Metrics.counter("ingest", "dead_letters")

    def process(self, chunk: CsvChunk) -> Iterator:
        data, begin, has_header = read_chunk(chunk)
        if has_header:
            header, _, data = data.partition(b"\n")
            columns = parse_header(header.removeprefix(_UTF8_BOM), self._fmt.delimiter)
            if columns != self._fmt.columns:
                raise ValueError(f"{chunk.path}: header columns {columns} differ from those the job was built "
                                 f"with ({self._fmt.columns})")
            begin += len(header) + 1
        parsed = parse_csv_chunk(data, self._fmt, chunk.path, lambda: count_lines_before(chunk.path, begin) + 1)
        self._rows.inc(parsed.batch.num_rows)
        self._dead.inc(len(parsed.dead_letters))
        yield beam.pvalue.TaggedOutput(RECORDS_READ, parsed.records_read)
        for dead_letter in parsed.dead_letters:
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter)
        if parsed.batch.num_rows:
            yield from self._split.partition(parsed.batch)


class ReadCsvSplits(beam.PTransform):
    """Reads headed CSV files into RecordBatches per split, with dead letters and read counts.

    Example::

        files, fmt = resolve_csv_input("data/*.csv", column_types={})
        out = p | ReadCsvSplits(files, fmt, HashSplit((("train", 2), ("eval", 1))))
        train_batches, dead_letters, keyed = out["train"], out["dead_letter"], out["split_batches"]

    Args:
      files: the files to read, with their sizes (resolved when the graph is built and recorded in the run
        manifest; not globbed again, so names with glob characters are read as they are).
      fmt: their columns and types.
      split: how rows are assigned to named splits.
      chunk_bytes: bytes parsed into one RecordBatch.
    """

    def __init__(self, files: Sequence[InputFile], fmt: RecordFormat, split: HashSplit, chunk_bytes: int = 8 << 20):
        super().__init__()
        if not files:
            raise ValueError("files is empty")
        if split.key is not None and split.key not in fmt.columns:
            raise ValueError(f"split key {split.key!r} is not a column ({', '.join(fmt.columns)})")
        if split.key is not None and fmt.type_of(split.key) == "float":
            raise ValueError(f"split key {split.key!r} is a float column; hash an int or string column")
        self._chunks = [c for f in files for c in plan_chunks(f.path, f.size, chunk_bytes)]
        self._fmt = fmt
        self._split = split

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        outputs = (pbegin
                   | "Chunks" >> beam.Create(self._chunks)
                   | "Distribute" >> beam.Reshuffle()
                   | "ParseAndSplit" >> beam.ParDo(ParseAndSplitCsvChunk(self._fmt, self._split)).with_outputs(
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
