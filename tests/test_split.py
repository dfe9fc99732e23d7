import bisect
import hashlib

import pyarrow as pa

from beam_ml.split import HashSplit


def _tfx_bucket(key: bytes, cumulative: list[int]) -> int:
    """TFX ExampleGen's formula, written out independently."""
    return bisect.bisect(cumulative, int(hashlib.sha256(key).hexdigest(), 16) % cumulative[-1])


def test_whole_record_split_matches_tfx_formula_and_weights():
    lines = [f"row-{i},{i * 7}".encode() for i in range(6000)]
    batch = pa.RecordBatch.from_arrays([pa.array(range(6000))], ["i"])
    split = HashSplit((("train", 2), ("eval", 1)))
    index = split.assign(batch, lines)
    assert list(index) == [_tfx_bucket(line, [2, 3]) for line in lines]
    assert abs((index == 0).mean() - 2 / 3) < 0.02
    assert list(split.assign(batch, lines)) == list(index)  # deterministic


def test_key_split_keeps_every_key_in_one_split():
    keys = [[f"user{i % 50}".encode()] for i in range(1000)]
    batch = pa.RecordBatch.from_arrays([pa.array(keys, pa.large_list(pa.large_binary()))], ["user"])
    split = HashSplit((("train", 3), ("eval", 1), ("test", 1)), key="user")
    index = split.assign(batch, [b""] * 1000)
    by_key = {}
    for key, i in zip(keys, index):
        by_key.setdefault(key[0], set()).add(int(i))
    assert all(len(s) == 1 for s in by_key.values())
    assert list(index) == [_tfx_bucket(k[0], [3, 4, 5]) for k in keys]
    parts = dict(split.partition(batch, [b""] * 1000))
    assert sum(b.num_rows for b in parts.values()) == 1000


def test_int_keys_hash_their_decimal_text_and_missing_keys_hash_empty():
    batch = pa.RecordBatch.from_arrays([pa.array([[12], None], pa.large_list(pa.int64()))], ["k"])
    index = HashSplit((("train", 2), ("eval", 1)), key="k").assign(batch, [b"", b""])
    assert list(index) == [_tfx_bucket(b"12", [2, 3]), _tfx_bucket(b"", [2, 3])]


def test_the_c_hash_and_the_hashlib_fallback_agree_with_tfx_on_awkward_keys():
    from beam_ml import split
    assert split._sha256mod is not None, "the C extension was not built (setup.py build_ext)"
    keys = [b"", b"\x00", b"a" * 55, b"a" * 56, b"a" * 64, b"\xff" * 1000, "ünïcode".encode()] + \
           [f"row-{i}".encode() for i in range(2000)]
    for modulus in (1, 2, 3, 7, 100, 2 ** 31 - 1):
        expected = [int(hashlib.sha256(k).hexdigest(), 16) % modulus for k in keys]
        assert list(split.sha256_mod(keys, modulus)) == expected
        assert list(split.sha256_mod_hashlib(keys, modulus)) == expected
    assert len(split.sha256_mod([], 3)) == 0
