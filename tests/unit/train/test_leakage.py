import apache_beam as beam
import pyarrow as pa
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_ml.ingest.split import HashSplit
from beam_ml.train.leakage import CheckLeakage


def _batch(users):
    return pa.RecordBatch.from_arrays(
        [pa.array([None if u is None else [u.encode()] for u in users], pa.large_list(pa.large_binary())),
         pa.array([[i] for i in range(len(users))], pa.large_list(pa.int64()))], ["user", "i"])


def test_keys_in_several_splits_are_counted_with_examples():
    batches = [("train", _batch(["a", "b", "c", None])), ("train", _batch(["a", "d"])),
               ("eval", _batch(["c", "e", "a"])), ("test", _batch(["e"]))]
    with TestPipeline() as p:
        leakage = p | beam.Create(batches) | CheckLeakage("user")
        assert_that(leakage, equal_to([{"key": "user", "keys_in_several_splits": 3, "examples": [
            {"value": "a", "splits": ["eval", "train"]}, {"value": "c", "splits": ["eval", "train"]},
            {"value": "e", "splits": ["eval", "test"]}]}]))


def test_a_hash_split_on_the_key_never_leaks():
    users = [f"user{i % 40}" for i in range(1000)]
    split = HashSplit((("train", 2), ("eval", 1)), key="user")
    with TestPipeline() as p:
        leakage = (p | beam.Create([_batch(users)]) | beam.FlatMap(split.partition)
                   | CheckLeakage("user") | beam.Map(lambda r: r["keys_in_several_splits"]))
        assert_that(leakage, equal_to([0]))
