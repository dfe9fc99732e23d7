"""The file source (`FileSource`): a glob of CSV, JSON Lines, Parquet or TFRecord files, local or gs://, or of
images in class folders (`image_format`), resolved when the graph is built.

The file kind comes from the extension (`.parquet`/`.pq`, `.jsonl`/`.ndjson`/`.json`, `.tfrecord[s]` of
tf.Example; anything else is CSV); one glob holds one kind. Text files are cut into byte-range chunks (a chunk owns
the lines that start inside it) so large files parse in parallel and in large batches (a CSV header is checked once
per file); Parquet files are read a row group at a time; a TFRecord file is read whole, in batches of records.
CSV, JSON Lines and TFRecord files may be gzip-compressed (`.csv.gz`): a compressed text file cannot be cut into byte
ranges, so one worker reads it whole; a `.gz` Parquet file or image is refused when the job is built.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Iterator, Optional, Sequence, Union

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_ml.core.chunks import ParsedChunk
from beam_ml.core.records import RecordFormat
from beam_ml.ingest.files.csv_format import (
    has_quoted_newline, infer_csv_format, parse_csv_chunk, parse_header, quoted_newline_in, string_columns_in_doubt)
from beam_ml.ingest.files.image_format import FILES_PER_CHUNK, IMAGE_EXTENSIONS, ImageFiles, check_image_paths
from beam_ml.ingest.files.jsonl_format import infer_jsonl_format, parse_jsonl_chunk
from beam_ml.ingest.files.parquet_format import infer_parquet_format, read_row_group, row_group_count
from beam_ml.ingest.files.tfrecord_format import infer_tfrecord_format, read_tfrecord_file
from beam_ml.ingest.source import ChunkedSource

_READ_BLOCK = 1 << 20
_SAMPLE_BYTES = 8 << 20
_UTF8_BOM = b"\xef\xbb\xbf"  # spreadsheet exports start with it; it is not part of the first column's name
KINDS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl",
         ".json": "jsonl", ".tfrecord": "tfrecord", ".tfrecords": "tfrecord",
         **{extension: "image" for extension in IMAGE_EXTENSIONS}}


def file_kind(path: str) -> str:
    """'csv' | 'jsonl' | 'parquet' | 'tfrecord' | 'image', from the extension, a final `.gz` (gzip) set aside; CSV
    when it is none of these."""
    return KINDS.get(os.path.splitext(path.lower().removesuffix(".gz"))[1], "csv")


def is_gzip(path: str) -> bool:
    return path.lower().endswith(".gz")


GZIP_KINDS = ("csv", "jsonl", "tfrecord")  # a .gz of these is read; of a Parquet file or an image it is refused


@dataclasses.dataclass(frozen=True)
class InputFile:
    """A file to read, its fingerprint, and for a CSV file whose quoted fields hold newlines (RFC 4180) where its
    records may be cut: `record_parity[k]` is the parity of the quote characters before byte `k * parity_step`
    (None: records are lines)."""

    path: str
    size: int
    sha256: str
    kind: str = "csv"
    record_parity: Optional[bytes] = None
    parity_step: int = 0

    def describe(self) -> dict:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "kind": self.kind}

    def parity_at(self, offset: int) -> int:
        """Quote parity before `offset`, a multiple of `parity_step` or the file's end (balanced: even)."""
        return 0 if offset >= self.size else self.record_parity[offset // self.parity_step]


@dataclasses.dataclass(frozen=True)
class ByteRange:
    """The records of a text file (CSV or JSON Lines) that start in the byte range [start, end): lines, or for a
    CSV file whose quoted fields hold newlines, records cut only at newlines outside quotes (`start_parity` and
    `end_parity`: the quote parity before `start` and `end`; None for lines)."""

    path: str
    start: int
    end: int
    kind: str = "csv"
    start_parity: Optional[int] = None
    end_parity: Optional[int] = None

    @property
    def multiline(self) -> bool:
        return self.start_parity is not None

    def parse(self, fmt: RecordFormat) -> Iterator[ParsedChunk]:
        data, begin, at_file_start = read_chunk(self)
        if at_file_start:
            data, skipped = _without_header(data, self.path, self.kind, fmt)
            begin += skipped
        first_line = lambda: count_lines_before(self.path, begin) + 1  # noqa: E731
        if self.kind == "csv":
            yield parse_csv_chunk(data, fmt, self.path, first_line, multiline=self.multiline)
        else:
            yield parse_jsonl_chunk(data, fmt, self.path, first_line)


@dataclasses.dataclass(frozen=True)
class GzipTextFile:
    """A whole gzip-compressed CSV or JSON Lines file: a compressed stream has no byte ranges to split it at, so one
    worker reads it (decompressed in memory)."""

    path: str
    kind: str = "csv"

    def parse(self, fmt: RecordFormat) -> Iterator[ParsedChunk]:
        with _open_text(self.path) as f:
            data = f.read()
        data, skipped = _without_header(data, self.path, self.kind, fmt)
        first_line = 2 if skipped and self.kind == "csv" else 1
        if self.kind == "csv":
            yield parse_csv_chunk(data, fmt, self.path, lambda: first_line, multiline=has_quoted_newline(data))
        else:
            yield parse_jsonl_chunk(data, fmt, self.path, lambda: first_line)


def _without_header(data: bytes, path: str, kind: str, fmt: RecordFormat) -> tuple[bytes, int]:
    """A file's first bytes without its byte-order mark and (CSV) its header, checked against the job's columns;
    and how many bytes were dropped."""
    if kind != "csv":
        rest = data.removeprefix(_UTF8_BOM)
        return rest, len(data) - len(rest)
    header, _, rest = data.partition(b"\n")
    columns = parse_header(header.removeprefix(_UTF8_BOM), fmt.delimiter)
    if columns != fmt.columns:
        raise ValueError(f"{path}: header columns {columns} differ from those the job was built with "
                         f"({fmt.columns})")
    return rest, len(header) + 1


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
    if is_gzip(file.path):
        return [GzipTextFile(file.path, file.kind)]
    if file.record_parity is not None:  # cut where the quote parity is known: multiples of its step
        chunk_bytes = max(1, chunk_bytes // file.parity_step) * file.parity_step
        return [ByteRange(file.path, start, min(start + chunk_bytes, file.size), file.kind,
                          file.parity_at(start), file.parity_at(min(start + chunk_bytes, file.size)))
                for start in range(0, max(file.size, 1), chunk_bytes)]
    return [ByteRange(file.path, start, min(start + chunk_bytes, file.size), file.kind)
            for start in range(0, max(file.size, 1), chunk_bytes)]


def _open(path: str):
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _open_text(path: str):
    """A text file's content: decompressed when it is gzip (`.gz`)."""
    return FileSystems.open(path, compression_type=CompressionTypes.GZIP if is_gzip(path)
                            else CompressionTypes.UNCOMPRESSED)


def read_header(path: str) -> bytes:
    with _open_text(path) as f:
        head = b""
        while b"\n" not in head:
            block = f.read(_READ_BLOCK)
            if not block:
                break
            head += block
    return head.split(b"\n", 1)[0].rstrip(b"\r").removeprefix(_UTF8_BOM)


def read_chunk(chunk: ByteRange) -> tuple[bytes, int, bool]:
    """The bytes of the chunk's whole records, the offset they start at, and whether they start with the header."""
    if chunk.multiline:
        return _read_quoted_records(chunk)
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


def _read_quoted_records(chunk: ByteRange) -> tuple[bytes, int, bool]:
    """`read_chunk` for CSV records that may span lines: a record starts after a newline outside quotes (an even
    number of quote characters before it). The chunk owns the records starting in [start, end): it skips the one
    running through `start` and reads on past `end` to the end of its last one, so neighbours meet exactly."""
    with _open(chunk.path) as f:
        begin = chunk.start
        if begin > 0:
            f.seek(begin - 1)
            if not (f.read(1) == b"\n" and chunk.start_parity == 0):  # inside a record: the previous chunk's
                begin += len(_read_to_record_end(f, chunk.start_parity))
        f.seek(begin)
        data = f.read(max(chunk.end - begin, 0)) if begin < chunk.end else b""
        if data and not (data.endswith(b"\n") and chunk.end_parity == 0):
            data += _read_to_record_end(f, chunk.end_parity)
    return data, begin, chunk.start == 0


def _read_to_record_end(f, parity: int) -> bytes:
    """The bytes from `f`'s position through the first newline outside quotes (`parity`: quotes before the position,
    mod 2), or to the end of the file."""
    out = []
    while True:
        block = f.read(64 << 10)
        if not block:
            return b"".join(out)
        at = 0
        while True:
            newline = block.find(b"\n", at)
            if newline < 0:
                parity = (parity + block.count(b'"', at)) % 2
                out.append(block)
                break
            parity = (parity + block.count(b'"', at, newline)) % 2
            if parity == 0:
                out.append(block[:newline + 1])
                return b"".join(out)
            at = newline + 1


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


def matched_paths(pattern: Union[str, Sequence[str]]) -> list[str]:
    """The files the glob(s) match, sorted."""
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    return sorted({m.path for result in FileSystems.match(patterns) for m in result.metadata_list})


def resolve_files(pattern: Union[str, Sequence[str]], column_types: dict[str, str],
                  kind: Optional[str] = None, parity_step: int = _READ_BLOCK) -> tuple[list[InputFile], RecordFormat]:
    """Matches the glob(s) and works out the record format from the files, when the graph is built: CSV headers
    (all must agree) and a type sample, a JSON Lines sample, or every Parquet file's schema. `kind` overrides the
    extension (a content-addressed object has none).

    Raises ValueError for no files, mixed kinds, differing headers or schemas, or no data rows in any file.
    """
    paths = matched_paths(pattern)
    if not paths:
        raise ValueError(f"{pattern!r} matches no files")
    kinds = {kind} if kind else {file_kind(p) for p in paths}
    if len(kinds) > 1:
        raise ValueError(f"{pattern!r} matches files of several kinds ({', '.join(sorted(kinds))}); use one glob "
                         f"per kind")
    kind = kinds.pop()
    compressed = [p for p in paths if is_gzip(p)]
    if compressed and kind not in GZIP_KINDS:
        raise ValueError(f"{compressed[0]}: a gzip-compressed {kind} file is not read (only CSV, JSON Lines and "
                         f"TFRecord files may be .gz); decompress it")
    files = [_fingerprint(p, kind, parity_step) for p in paths]
    if kind == "image":
        fmt = check_image_paths(paths)
        empty = False
    elif kind == "parquet":
        fmt = infer_parquet_format(paths, column_types)
        empty = all(row_group_count(p) == 0 for p in paths)
    elif kind == "tfrecord":
        fmt = infer_tfrecord_format(paths[0], column_types)
        empty = not fmt.columns
    elif kind == "jsonl":
        with _open_text(paths[0]) as f:
            sample = f.read(_SAMPLE_BYTES).removeprefix(_UTF8_BOM)
        fmt = infer_jsonl_format(sample, column_types)
        empty = not fmt.columns
    else:
        headers = {p: read_header(p) for p in paths}
        first = paths[0]
        for path in paths[1:]:
            if headers[path] != headers[first]:
                raise ValueError(f"header of {path} differs from {first}: {headers[path]!r} vs {headers[first]!r}")
        with _open_text(first) as f:
            sample = f.read(_SAMPLE_BYTES)
        fmt = infer_csv_format(headers[first], sample.split(b"\n", 1)[1] if b"\n" in sample else b"", column_types)
        empty = not any(_has_rows(f, headers[f.path]) for f in files)
    if empty:
        raise ValueError(f"{pattern!r}: {len(files)} file(s) but no data rows")
    return files, fmt


class FileSource(ChunkedSource):
    """Files of one kind (CSV, JSON Lines, Parquet, TFRecord), local or gs://, resolved when the graph is built.

    Example::

        source = FileSource.resolve("gs://bucket/penguins/*.csv", column_types={"year": "int"})
        out = p | ReadSplits(source, HashSplit((("train", 2), ("eval", 1))))
    """

    def __init__(self, files: Sequence[InputFile], fmt: RecordFormat, chunk_bytes: int = 8 << 20):
        if not files:
            raise ValueError("files is empty")
        self.files = tuple(files)
        self.fmt = fmt
        self.chunk_bytes = chunk_bytes

    @classmethod
    def resolve(cls, pattern: Union[str, Sequence[str]], column_types: dict[str, str],
                chunk_bytes: int = 8 << 20) -> "FileSource":
        """`resolve_files`: raises ValueError (or OSError) for no files, mixed kinds, disagreeing headers..."""
        return cls(*resolve_files(pattern, column_types), chunk_bytes=chunk_bytes)

    def describe(self) -> list[dict]:
        return [f.describe() for f in self.files]

    def type_doubts(self, inferred: Sequence[str]) -> list[dict]:
        """CSV columns of `inferred` typed 'string' by a few odd values in the first file's sample (see
        `csv_format.string_columns_in_doubt`), with the file; [] for other kinds."""
        if self.files[0].kind != "csv":
            return []
        path = self.files[0].path
        with _open_text(path) as f:
            sample = f.read(_SAMPLE_BYTES)
        body = sample.split(b"\n", 1)[1] if b"\n" in sample else b""
        body = body[: body.rfind(b"\n") + 1]  # whole lines only
        return [{"file": path, **doubt} for doubt in string_columns_in_doubt(body, self.fmt, inferred)]

    def chunks(self) -> list:
        if self.files[0].kind == "image":  # small files: many to a batch
            paths = [f.path for f in self.files]
            return [ImageFiles(tuple(paths[i:i + FILES_PER_CHUNK])) for i in range(0, len(paths), FILES_PER_CHUNK)]
        return [c for f in self.files for c in plan_chunks(f, self.chunk_bytes)]


def _has_rows(file: InputFile, header: bytes) -> bool:
    """Whether a CSV file holds anything after its header line."""
    if not is_gzip(file.path):
        return file.size > len(header) + 2
    with _open_text(file.path) as f:
        return bool(f.read(len(header) + 3 + len(_UTF8_BOM)).partition(b"\n")[2].strip())


def _fingerprint(path: str, kind: str, parity_step: int) -> InputFile:
    """The file's size and sha256, read once; for a plain CSV file, also where its records may be cut when quoted
    fields hold newlines (the quote parity at every multiple of `parity_step`)."""
    digest, size = hashlib.sha256(), 0
    track = kind == "csv" and not is_gzip(path)
    quotes, marks, quoted_newline = 0, [0], False
    with _open(path) as f:
        for block in iter(lambda: f.read(_READ_BLOCK), b""):
            digest.update(block)
            if track:
                next_mark = len(marks) * parity_step
                while next_mark <= size + len(block):
                    marks.append((quotes + block.count(b'"', 0, next_mark - size)) % 2)
                    next_mark += parity_step
                in_block = block.count(b'"')
                if (in_block or quotes % 2) and not quoted_newline:
                    quoted_newline = quoted_newline_in(block, quotes % 2)
                quotes += in_block
            size += len(block)
    multiline = track and quoted_newline and quotes % 2 == 0  # a stray quote unbalances them: read as lines
    return InputFile(path, size, digest.hexdigest(), kind, bytes(marks) if multiline else None,
                     parity_step if multiline else 0)
