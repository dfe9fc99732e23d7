import bisect
import hashlib
import struct

import numpy as np
import pyarrow as pa
import pytest

from beam_ml.config.train import PipelineConfig
from beam_ml.core.errors import ConfigError
from beam_ml.core.records import to_list_array
from beam_ml.core.times import parse_time
from beam_ml.ingest.split import HashSplit, TimeSplit, record_bytes, sha256_mod_hashlib, sha256_mod_records
from tests.support.paths import PENGUINS_CONFIG


def _tfx_bucket(key: bytes, cumulative: list[int]) -> int:
    """TFX ExampleGen's formula, written out independently."""
    return bisect.bisect(cumulative, int(hashlib.sha256(key).hexdigest(), 16) % cumulative[-1])


def _batch(**columns) -> pa.RecordBatch:
    types = {int: pa.int64(), float: pa.float32(), bytes: pa.large_binary()}
    arrays = []
    for values in columns.values():
        kind = next(type(v) for v in values if v is not None)
        arrays.append(pa.array([None if v is None else [v] for v in values], pa.large_list(types[kind])))
    return pa.RecordBatch.from_arrays(arrays, list(columns))


def _canonical(row: dict) -> bytes:
    """The documented record bytes, written out independently: columns by name, presence byte, value."""
    out = b""
    for name in sorted(row):
        value = row[name]
        if value is None:
            out += b"\x00"
        elif isinstance(value, int):
            out += b"\x01" + struct.pack("<q", value)
        elif isinstance(value, float):
            out += b"\x01" + (struct.pack("<I", 0x7FC00000) if value != value else struct.pack("<f", value or 0.0))
        else:
            out += b"\x01" + struct.pack("<Q", len(value)) + value
    return out


def test_whole_record_split_hashes_the_canonical_record_with_tfx_bucketing():
    rows = [{"b_text": f"row-{i}".encode() if i % 7 else None, "a_int": i * 7 - 300,
             "c_float": float(i) / 3 if i % 5 else None} for i in range(6000)]
    rows[1]["c_float"], rows[2]["c_float"], rows[3]["b_text"] = -0.0, float("nan"), b""
    batch = _batch(**{name: [r[name] for r in rows] for name in ("c_float", "a_int", "b_text")})
    split = HashSplit((("train", 2), ("eval", 1)))
    index = split.assign(batch)
    expected = [_tfx_bucket(_canonical({k: (float(np.float32(v)) if isinstance(v, float) else v)
                                        for k, v in r.items()}), [2, 3]) for r in rows]
    assert list(index) == expected
    assert abs((index == 0).mean() - 2 / 3) < 0.02
    assert list(split.assign(batch.slice(1000, 2000))) == expected[1000:3000]  # sliced arrays too
    reordered = pa.RecordBatch.from_arrays([batch.column(2), batch.column(0), batch.column(1)],
                                           ["b_text", "c_float", "a_int"])
    assert list(split.assign(reordered)) == expected  # column order does not matter
    assert sha256_mod_hashlib(record_bytes(batch), 3).tolist() == sha256_mod_records(batch, 3).tolist()


def test_key_split_keeps_every_key_in_one_split():
    keys = [[f"user{i % 50}".encode()] for i in range(1000)]
    batch = pa.RecordBatch.from_arrays([pa.array(keys, pa.large_list(pa.large_binary()))], ["user"])
    split = HashSplit((("train", 3), ("eval", 1), ("test", 1)), key="user")
    index = split.assign(batch)
    by_key = {}
    for key, i in zip(keys, index):
        by_key.setdefault(key[0], set()).add(int(i))
    assert all(len(s) == 1 for s in by_key.values())
    assert list(index) == [_tfx_bucket(k[0], [3, 4, 5]) for k in keys]
    parts = dict(split.partition(batch))
    assert sum(b.num_rows for b in parts.values()) == 1000


def test_int_keys_hash_their_decimal_text_and_missing_keys_hash_empty():
    batch = pa.RecordBatch.from_arrays([pa.array([[12], None], pa.large_list(pa.int64()))], ["k"])
    index = HashSplit((("train", 2), ("eval", 1)), key="k").assign(batch)
    assert list(index) == [_tfx_bucket(b"12", [2, 3]), _tfx_bucket(b"", [2, 3])]


def test_the_c_hash_and_the_hashlib_fallback_agree_with_tfx_on_awkward_keys():
    from beam_ml.ingest import split
    assert split._sha256mod is not None, "the C extension was not built (setup.py build_ext)"
    keys = [b"", b"\x00", b"a" * 55, b"a" * 56, b"a" * 64, b"\xff" * 1000, "ünïcode".encode()] + \
           [f"row-{i}".encode() for i in range(2000)]
    for modulus in (1, 2, 3, 7, 100, 2 ** 31 - 1):
        expected = [int(hashlib.sha256(k).hexdigest(), 16) % modulus for k in keys]
        assert list(split.sha256_mod(keys, modulus)) == expected
        assert list(split.sha256_mod_hashlib(keys, modulus)) == expected
    assert len(split.sha256_mod([], 3)) == 0


def _time_batch(column, values):
    return pa.RecordBatch.from_arrays([to_list_array(pa.array(values, column))], ["ts"])


def test_time_split_places_rows_by_cutoff_and_names_rows_without_a_time():
    split = TimeSplit((("train", 100.0), ("eval", 200.0), ("test", None)), "ts")
    batch = _time_batch(pa.int64(), [5, 100, 199, 200, 10_000, None])
    parts = {name: b.column("ts").to_pylist() for name, b in split.partition(batch)}
    assert parts == {"train": [[5]], "eval": [[100], [199]], "test": [[200], [10_000]], None: [None]}
    [dead] = split.dead_letters(dict(split.partition(batch))[None])
    assert "no usable time in 'ts'" in dead.reason


def test_time_split_reads_iso_text_in_utc_and_unparsable_text_is_not_placed():
    split = TimeSplit((("train", parse_time("2020-01-01")), ("eval", None)), "ts")
    batch = _time_batch(pa.large_binary(), [b"2019-12-31T23:59:59Z", b"2020-01-01", b"2020-01-01T00:30:00+01:00",
                                            b"yesterday"])
    parts = {name: [v[0] for v in b.column("ts").to_pylist()] for name, b in split.partition(batch)}
    assert parts == {"train": [b"2019-12-31T23:59:59Z", b"2020-01-01T00:30:00+01:00"], "eval": [b"2020-01-01"],
                     None: [b"yesterday"]}


@pytest.mark.parametrize("cutoffs, message", [
    ({"train": "2020-01-01", "eval": "2021-01-01"}, "the last's is null"),
    ({"train": "2021-01-01", "eval": "2020-01-01", "test": None}, "must increase"),
    ({"train": "soon", "eval": None}, "ISO 8601"),
    ({"eval": None}, "train and eval")])
def test_time_split_options_are_checked_at_launch(cutoffs, message):
    with pytest.raises(ConfigError, match=f"--split_time_cutoffs: .*{message}"):
        PipelineConfig.load(PENGUINS_CONFIG, {"split_time_key": "year", "split_time_cutoffs": cutoffs})


def test_time_split_places_only_rows_with_exactly_one_time():
    split = TimeSplit((("train", 100.0), ("eval", None)), "ts")
    column = pa.array([[5], [1, 500], [], None, [300]], pa.large_list(pa.int64()))
    batch = pa.RecordBatch.from_arrays([column], ["ts"]).slice(1)  # a slice: offsets do not start at 0
    parts = {name: b.column("ts").to_pylist() for name, b in split.partition(batch)}
    assert parts == {"eval": [[300]], None: [[1, 500], [], None]}


def test_a_float_time_column_is_rejected_at_launch():
    from beam_ml.train.plan import plan_run
    config = PipelineConfig.load(PENGUINS_CONFIG, {"split_time_key": "bill_length_mm",
                                                   "split_time_cutoffs": {"train": 40, "eval": None}})
    with pytest.raises(ConfigError, match="^--split_time_key: 'bill_length_mm' is a float column"):
        plan_run(config)


def test_each_split_checks_the_record_format_it_is_given():
    from beam_ml.core.records import RecordFormat
    from beam_ml.ingest.split import AllRows, GivenSplit
    fmt = RecordFormat(("user", "ts", "x"), ("string", "int", "float"))
    HashSplit((("train", 1), ("eval", 1)), "user").check(fmt)
    TimeSplit((("train", 1.0), ("eval", None)), "ts").check(fmt)
    with pytest.raises(ValueError, match="split key 'x' is a float column"):
        HashSplit((("train", 1), ("eval", 1)), "x").check(fmt)
    with pytest.raises(ValueError, match="split key 'day' is not a column"):
        TimeSplit((("train", 1.0), ("eval", None)), "day").check(fmt)
    batch = pa.RecordBatch.from_pydict({"x": [1.0, 2.0]})
    assert [(name, rows.num_rows) for name, rows in AllRows().partition(batch)] == [("rows", 2)]
    assert AllRows("all").names == ("all",) and GivenSplit(("train", "eval")).dead_letters(batch) == []
