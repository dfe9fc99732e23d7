"""Deterministic hash splits with TFX's semantics: sha256 of a key feature (or of the whole record) mod the total
bucket weight, then the split whose cumulative weight first exceeds that bucket (`bisect`)."""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Iterator, Optional, Sequence

import numpy as np
import pyarrow as pa

try:
    from beam_ml import _sha256mod  # built by setup.py when a C compiler and OpenSSL's headers are present
except ImportError:
    _sha256mod = None


@dataclasses.dataclass(frozen=True)
class HashSplit:
    """Named splits with integer bucket weights, e.g. `HashSplit((("train", 2), ("eval", 1)))`.

    `key` names the feature to hash; without it the whole record is hashed (for CSV: the raw line's bytes,
    where TFX hashes the serialized tf.Example). A missing key value hashes as the empty string.
    """

    buckets: tuple[tuple[str, int], ...]
    key: Optional[str] = None

    def __post_init__(self):
        if not self.buckets or any(w <= 0 for _, w in self.buckets):
            raise ValueError(f"buckets need positive weights: {self.buckets}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.buckets)

    def assign(self, batch: pa.RecordBatch, lines: Sequence[bytes]) -> np.ndarray:
        """The split index of each row."""
        keys = lines if self.key is None else [_key_bytes(v) for v in batch.column(self.key).to_pylist()]
        cumulative = np.cumsum([w for _, w in self.buckets])
        return np.searchsorted(cumulative, sha256_mod(keys, int(cumulative[-1])), side="right")

    def partition(self, batch: pa.RecordBatch, lines: Sequence[bytes]) -> Iterator[tuple[str, pa.RecordBatch]]:
        """Yields (split name, rows of that split) for each non-empty split."""
        index = self.assign(batch, lines)
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


def _key_bytes(value) -> bytes:
    if not value:  # null or empty list
        return b""
    first = value[0]
    return first if isinstance(first, bytes) else str(first).encode()
