"""How rows are assigned to named splits (`Split`): by hash (`HashSplit`), by time (`TimeSplit`), as the input
already is (`GivenSplit`), or all rows to one (`AllRows`).

Hash splits are deterministic, with TFX's semantics: sha256 of a key feature (or of the whole record) mod the total
bucket weight, then the split whose cumulative weight first exceeds that bucket (`bisect`).

A key feature hashes as TFX hashes it: the value's text (an int as its decimal digits). The whole record hashes as
its canonical bytes, built from the typed values rather than from how a file spelled them, so the same rows split the
same way from CSV, Parquet, JSON Lines or a database. The bytes cover every column in name order. Each column gives
a presence byte (0 missing, 1 present), then for a present value: an int as 8 bytes little-endian; a float as its
IEEE float32 bits, 4 bytes little-endian, with -0.0 as 0.0 and every NaN alike; bytes as an 8-byte little-endian
length and the bytes. (TFX hashes the serialized tf.Example instead, whose bytes depend on the encoder.)
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Iterator, Optional, Protocol, Sequence

import numpy as np
import pyarrow as pa

from beam_ml.core.deadletter import DeadLetter
from beam_ml.core.records import RecordFormat, row_text
from beam_ml.core.times import parse_time

try:
    from beam_ml.ingest import _sha256mod  # built by setup.py when a C compiler and OpenSSL's headers are present
except ImportError:
    _sha256mod = None


class Split(Protocol):
    """How `ReadSplits` assigns rows to named splits."""

    @property
    def names(self) -> tuple[str, ...]:
        """The splits, in order."""

    def check(self, fmt: RecordFormat) -> None:
        """Raises ValueError if the split cannot apply to records of `fmt` (a key column it lacks, say)."""

    def partition(self, batch: pa.RecordBatch) -> Iterator[tuple[Optional[str], pa.RecordBatch]]:
        """(split name, its rows) for each split with rows; (None, rows) for rows the split cannot place."""

    def dead_letters(self, batch: pa.RecordBatch) -> list[DeadLetter]:
        """Why each row that `partition` named None could not be placed."""


@dataclasses.dataclass(frozen=True)
class AllRows:
    """Every row to one split (`name`): batch prediction reads its input whole."""

    name: str = "rows"

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)

    def check(self, fmt: RecordFormat) -> None:
        pass

    def partition(self, batch: pa.RecordBatch) -> Iterator[tuple[Optional[str], pa.RecordBatch]]:
        yield self.name, batch

    def dead_letters(self, batch: pa.RecordBatch) -> list[DeadLetter]:
        return []


@dataclasses.dataclass(frozen=True)
class HashSplit:
    """Named splits with integer bucket weights, e.g. `HashSplit((("train", 2), ("eval", 1)))`.

    `key` names the feature to hash; without it the whole record is hashed (its canonical bytes, see above). A
    missing key value hashes as the empty string.
    """

    buckets: tuple[tuple[str, int], ...]
    key: Optional[str] = None

    def __post_init__(self):
        if not self.buckets or any(w <= 0 for _, w in self.buckets):
            raise ValueError(f"buckets need positive weights: {self.buckets}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.buckets)

    def check(self, fmt: RecordFormat) -> None:
        if self.key is not None:
            _require_key(fmt, self.key)
            if fmt.type_of(self.key) == "float":
                raise ValueError(f"split key {self.key!r} is a float column; hash an int or string column")

    def dead_letters(self, batch: pa.RecordBatch) -> list[DeadLetter]:
        return []  # every row has a bucket

    def assign(self, batch: pa.RecordBatch) -> np.ndarray:
        """The split index of each row."""
        cumulative = np.cumsum([w for _, w in self.buckets])
        modulus = int(cumulative[-1])
        if self.key is None:
            buckets = sha256_mod_records(batch, modulus)
        else:
            buckets = sha256_mod([_key_bytes(v) for v in batch.column(self.key).to_pylist()], modulus)
        return np.searchsorted(cumulative, buckets, side="right")

    def partition(self, batch: pa.RecordBatch) -> Iterator[tuple[str, pa.RecordBatch]]:
        """Yields (split name, rows of that split) for each non-empty split."""
        if len(self.buckets) == 1:  # nothing to hash
            yield self.names[0], batch
            return
        index = self.assign(batch)
        for i, name in enumerate(self.names):
            mask = index == i
            if mask.all():
                yield name, batch
            elif mask.any():
                yield name, batch.filter(pa.array(mask))


def sha256_mod(keys: Sequence[bytes], modulus: int) -> np.ndarray:
    """`int(sha256(k).hexdigest(), 16) % modulus` for each key: in C when the extension is built, else
    `sha256_mod_hashlib`."""
    if _sha256mod is None:
        return sha256_mod_hashlib(keys, modulus)
    return np.frombuffer(_sha256mod.sha256_mod(list(keys), modulus), dtype="<i8")


def sha256_mod_hashlib(keys: Sequence[bytes], modulus: int) -> np.ndarray:
    """The same with hashlib, the big-integer remainder taken in numpy (Horner's rule over the digest's eight
    32-bit words) instead of one Python int per row."""
    if not 0 < modulus < 2 ** 31:
        raise ValueError(f"modulus {modulus} out of range")
    sha256 = hashlib.sha256
    words = np.frombuffer(b"".join([sha256(k).digest() for k in keys]), dtype=">u4").reshape(-1, 8)
    remainder = np.zeros(len(keys), dtype=np.uint64)
    m = np.uint64(modulus)
    for j in range(8):  # remainder < 2**31, so remainder * 2**32 + word fits in 64 bits
        remainder = (remainder * np.uint64(1 << 32) + words[:, j].astype(np.uint64)) % m
    return remainder.astype(np.int64)


_KINDS = {pa.int64(): 0, pa.float32(): 1, pa.large_binary(): 2}


def _record_columns(batch: pa.RecordBatch) -> list[tuple[str, pa.LargeListArray]]:
    columns = sorted(zip(batch.schema.names, batch.columns), key=lambda c: c[0])
    for name, column in columns:
        if not pa.types.is_large_list(column.type) or column.type.value_type not in _KINDS:
            raise TypeError(f"column {name!r}: expected large_list<int64|float32|large_binary>, got {column.type}")
        if column.values.null_count:  # a missing value is a null or empty list, never a null inside one
            raise ValueError(f"column {name!r}: null values inside lists")
    return columns


def sha256_mod_records(batch: pa.RecordBatch, modulus: int) -> np.ndarray:
    """`int(sha256(record).hexdigest(), 16) % modulus` for each row's canonical bytes (module docstring)."""
    if _sha256mod is None:
        return sha256_mod_hashlib(record_bytes(batch), modulus)
    if batch.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    specs = []
    for _, column in _record_columns(batch):
        values = column.values
        kind = _KINDS[values.type]
        buffers = values.buffers()  # [validity, data] or [validity, offsets, data]
        if kind == 2:
            data, value_offsets = buffers[2] or b"", _sliced_offsets(buffers[1], values.offset, len(values))
        else:
            width = 8 if kind == 0 else 4
            data, value_offsets = memoryview(buffers[1] or b"")[values.offset * width:], None
        specs.append((kind, column.buffers()[1], data, value_offsets, column.offset))
    return np.frombuffer(_sha256mod.sha256_mod_records(specs, batch.num_rows, modulus), dtype="<i8")


def _sliced_offsets(buffer: pa.Buffer, offset: int, length: int) -> memoryview:
    return memoryview(buffer)[offset * 8:(offset + length + 1) * 8]


def record_bytes(batch: pa.RecordBatch) -> list[bytes]:
    """Each row's canonical bytes, in Python (the reference for the C path, and its fallback)."""
    encoders = []
    for _, column in _record_columns(batch):
        kind = _KINDS[column.type.value_type]
        encoders.append((kind, column.to_pylist()))
    rows = []
    for i in range(batch.num_rows):
        parts = []
        for kind, values in encoders:
            value = values[i]
            if not value:
                parts.append(b"\x00")
            elif kind == 0:
                parts.append(b"\x01" + int(value[0]).to_bytes(8, "little", signed=True))
            elif kind == 1:
                parts.append(b"\x01" + _float32_bits(value[0]))
            else:
                parts.append(b"\x01" + len(value[0]).to_bytes(8, "little") + value[0])
        rows.append(b"".join(parts))
    return rows


def _float32_bits(value: float) -> bytes:
    if value != value:
        return (0x7FC00000).to_bytes(4, "little")
    return np.array([0.0 if value == 0 else value], dtype="<f4").tobytes()


def _key_bytes(value) -> bytes:
    if not value:  # null or empty list
        return b""
    first = value[0]
    return first if isinstance(first, bytes) else str(first).encode()


@dataclasses.dataclass(frozen=True)
class TimeSplit:
    """Splits by time: each split takes the rows before its cutoff (unix seconds) not taken by an earlier one; the
    last split's cutoff is None (everything later), e.g. `TimeSplit((("train", 1.56e9), ("eval", None)), "ts")`.

    `key` is an int column of unix seconds, or a string column of ISO 8601 times (UTC unless they name an
    offset). A row whose time is missing or unparsable cannot be placed: `partition` names it None and
    `dead_letters` says why.
    """

    cutoffs: tuple[tuple[str, Optional[float]], ...]
    key: str

    def __post_init__(self):
        bounds = [c for _, c in self.cutoffs]
        if not bounds or bounds[-1] is not None or None in bounds[:-1] or bounds[:-1] != sorted(bounds[:-1]):
            raise ValueError(f"cutoffs must increase and only the last be None: {self.cutoffs}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.cutoffs)

    def check(self, fmt: RecordFormat) -> None:
        _require_key(fmt, self.key)

    def partition(self, batch: pa.RecordBatch) -> Iterator[tuple[Optional[str], pa.RecordBatch]]:
        """Yields (split name, its rows) for each non-empty split, and (None, rows without a usable time)."""
        times = row_times(batch.column(self.key))
        index = np.searchsorted(np.array([c for _, c in self.cutoffs[:-1]], dtype=np.float64), times, side="right")
        index[np.isnan(times)] = -1
        for i, name in [(-1, None), *enumerate(self.names)]:
            mask = index == i
            if mask.all():
                yield name, batch
            elif mask.any():
                yield name, batch.filter(pa.array(mask))

    def dead_letters(self, batch: pa.RecordBatch) -> list[DeadLetter]:
        """One per row `partition` could not place."""
        rows = batch.to_pylist()
        return [DeadLetter(source="split", line=0, raw=row_text(row),
                           reason=f"no usable time in {self.key!r} for the time split") for row in rows]


def row_times(column: pa.LargeListArray) -> np.ndarray:
    """Unix seconds per row of a record-layout column (NaN where missing or unparsable)."""
    lengths = column.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    times = np.full(len(column), np.nan)
    present = lengths == 1  # a list of several times places no row
    offsets = column.offsets.to_numpy()
    values = column.flatten().take(pa.array(offsets[:-1][present] - offsets[0]))
    if pa.types.is_large_binary(values.type):
        parsed = [_parse_time(v) for v in values.to_pylist()]
        times[present] = np.array(parsed, dtype=np.float64)
    else:
        times[present] = values.to_numpy(zero_copy_only=False).astype(np.float64)
    return times


def _parse_time(text: bytes) -> float:
    try:
        return parse_time(text.decode())
    except (ValueError, UnicodeDecodeError):
        return np.nan


@dataclasses.dataclass(frozen=True)
class GivenSplit:
    """The splits of an input that is already split (one glob per split): each chunk's rows keep their split."""

    names: tuple[str, ...]

    def check(self, fmt: RecordFormat) -> None:
        pass

    def partition(self, batch: pa.RecordBatch) -> Iterator[tuple[Optional[str], pa.RecordBatch]]:
        raise TypeError("rows of a pre-split input carry their split; nothing to partition")

    def dead_letters(self, batch: pa.RecordBatch) -> list[DeadLetter]:
        return []


def _require_key(fmt: RecordFormat, key: str) -> None:
    if key not in fmt.columns:
        raise ValueError(f"split key {key!r} is not a column ({', '.join(fmt.columns)})")
