"""The same rows read from CSV, JSON Lines and Parquet: the same splits and the same statistics; bad input named."""
import json
import math
import os

import apache_beam as beam
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_ml.ingest import DEAD_LETTER, RECORDS_READ, SPLIT_BATCHES, ReadSplits, resolve_files
from beam_ml.split import HashSplit
from beam_ml.validate import STATS_FILE, GenerateSplitStatistics, split_dir
from beam_ml.config import PipelineConfig
from conftest import PENGUINS_CONFIG, PENGUINS_CSV

TRAIN_EVAL = HashSplit((("train", 2), ("eval", 1)))


def _penguin_copies(tmp_path) -> dict[str, str]:
    """The bundled penguin CSV, and Parquet and JSON Lines copies of it written independently with pandas."""
    frame = pd.read_csv(PENGUINS_CSV, na_values=["NA"], keep_default_na=False)
    parquet = tmp_path / "parquet"
    parquet.mkdir()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table.slice(0, 200), parquet / "part-0.parquet", row_group_size=64)  # several row groups
    pq.write_table(table.slice(200), parquet / "part-1.parquet")
    jsonl = tmp_path / "jsonl"
    jsonl.mkdir()
    with open(jsonl / "penguins.jsonl", "w") as f:
        for record in frame.to_dict("records"):
            f.write(json.dumps({k: v for k, v in record.items()
                                if not (isinstance(v, float) and math.isnan(v))}) + "\n")
    tfrecord = tmp_path / "tfrecord"
    tfrecord.mkdir()
    types = PipelineConfig.load(PENGUINS_CONFIG, {}).column_types
    with tf.io.TFRecordWriter(str(tfrecord / "penguins.tfrecord.gz"), options="GZIP") as writer:
        for record in frame.to_dict("records"):
            writer.write(_example(record, types).SerializeToString())
    return {"csv": PENGUINS_CSV, "parquet": str(parquet / "*.parquet"), "jsonl": str(jsonl / "*.jsonl"),
            "tfrecord": str(tfrecord / "*.tfrecord.gz")}


def _example(record: dict, types: dict) -> tf.train.Example:
    feature = {}
    for name, value in record.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if types[name] == "string":
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(value).encode()]))
        elif types[name] == "int":
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _split_counts_and_stats(pattern: str, stats_dir: str) -> tuple[dict, dict]:
    files, fmt = resolve_files(pattern, PipelineConfig.load(PENGUINS_CONFIG, {}).column_types)
    with TestPipeline() as p:
        out = p | ReadSplits(files, fmt, TRAIN_EVAL)
        _ = out[SPLIT_BATCHES] | GenerateSplitStatistics(stats_dir, TRAIN_EVAL.names)
        assert_that(out[DEAD_LETTER], equal_to([]), label="NoDeadLetters")
    stats = {name: tfdv.load_stats_binary(os.path.join(split_dir(stats_dir, name), STATS_FILE))
             for name in TRAIN_EVAL.names}
    return {name: s.datasets[0].num_examples for name, s in stats.items()}, stats


def _by_feature(stats) -> tuple:
    """A split's statistics as (example count, {feature: its statistics}): column order differs by source."""
    dataset = stats.datasets[0]
    return dataset.num_examples, {f.path.step[0]: f for f in dataset.features}


def test_csv_parquet_jsonl_and_tfrecord_copies_give_the_same_splits_and_statistics(tmp_path):
    copies = _penguin_copies(tmp_path)
    counts, stats = {}, {}
    for kind, pattern in copies.items():
        counts[kind], stats[kind] = _split_counts_and_stats(pattern, str(tmp_path / f"stats_{kind}"))
    assert counts["csv"]["train"] + counts["csv"]["eval"] == 344
    for kind in ("parquet", "jsonl", "tfrecord"):
        assert counts[kind] == counts["csv"], kind
        for name in TRAIN_EVAL.names:
            assert _by_feature(stats[kind][name]) == _by_feature(stats["csv"][name]), (kind, name)


def test_parquet_schema_problems_fail_at_launch_naming_file_and_column(tmp_path):
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), tmp_path / "1.parquet")
    pq.write_table(pa.table({"a": [3]}), tmp_path / "2.parquet")
    with pytest.raises(ValueError, match=r"2\.parquet: column 'b' is missing"):
        resolve_files(str(tmp_path / "*.parquet"), {})
    os.remove(tmp_path / "2.parquet")
    with pytest.raises(ValueError, match=r"1\.parquet: column 'b' has type string, which does not convert to int"):
        resolve_files(str(tmp_path / "*.parquet"), {"b": "int"})


def test_bad_json_lines_are_dead_lettered_and_counted(tmp_path):
    (tmp_path / "x.jsonl").write_text("\n".join([
        '{"name": "a", "n": 1, "v": 0.5}',
        '{"name": "b", "n": "two", "v": 1.0}',  # a string in an int column
        '{"name": "c", "n": 3',  # broken JSON
        '[1, 2, 3]',  # not an object
        '{"name": "d", "v": 2}',  # missing n is a missing value; an integer is a number
    ]) + "\n")
    assert resolve_files(str(tmp_path / "*.jsonl"), {})[1].types == ("string", "string", "float")  # "two" in n
    files, fmt = resolve_files(str(tmp_path / "*.jsonl"), {"n": "int"})
    with TestPipeline() as p:
        out = p | ReadSplits(files, fmt, HashSplit((("all", 1),)))
        assert_that(out[RECORDS_READ] | beam.CombineGlobally(sum), equal_to([5]), label="Read")
        assert_that(out["all"] | beam.Map(lambda b: b.num_rows) | "Rows" >> beam.CombineGlobally(sum),
                    equal_to([2]), label="Rows")
        assert_that(out[DEAD_LETTER] | beam.Map(lambda d: (d.line, d.reason.split(":")[0])),
                    equal_to([(2, "column 'n'"), (3, "not valid JSON"), (4, "expected a JSON object, got list")]),
                    label="DeadLetters")


def test_bad_tfrecords_are_dead_lettered_with_their_record_number(tmp_path):
    good = _example({"n": 1, "s": "a"}, {"n": "int", "s": "string"}).SerializeToString()
    wrong_kind = _example({"n": 1.5, "s": "b"}, {"n": "float", "s": "string"}).SerializeToString()
    with tf.io.TFRecordWriter(str(tmp_path / "x.tfrecord")) as writer:
        for record in (good, b"not an example \xff", good, wrong_kind):
            writer.write(record)
    files, fmt = resolve_files(str(tmp_path / "*.tfrecord"), {})
    assert dict(zip(fmt.columns, fmt.types)) == {"n": "int", "s": "string"}
    with TestPipeline() as p:
        out = p | ReadSplits(files, fmt, HashSplit((("all", 1),)))
        assert_that(out[RECORDS_READ] | beam.CombineGlobally(sum), equal_to([4]), label="Read")
        assert_that(out[DEAD_LETTER] | beam.Map(lambda d: d.line), equal_to([2, 4]), label="DeadLetters")


@pytest.mark.parametrize("kind", ["parquet", "jsonl", "tfrecord"])
def test_the_training_job_accepts_parquet_and_jsonl_input(tmp_path, capsys, kind):
    from jobs.train_pipeline import main
    pattern = _penguin_copies(tmp_path)[kind]
    assert main(["--config", PENGUINS_CONFIG, "--input", pattern, "--output_dir", str(tmp_path / "runs"),
                 "--serving_dir", str(tmp_path / "serving"), "--validate_only"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["columns"]["species"] == "string" and plan["columns"]["body_mass_g"] == "float"
