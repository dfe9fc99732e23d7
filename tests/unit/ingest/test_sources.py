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
import yaml
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_ml.config.train import PipelineConfig
from beam_ml.ingest.files.source import FileSource, resolve_files
from beam_ml.ingest.read import ReadSplits
from beam_ml.ingest.split import HashSplit
from beam_ml.core.layout import STATS_FILE, split_dir
from beam_ml.train.validate import GenerateSplitStatistics
from tests.support.databases import PENGUIN_DB_COLUMNS
from tests.support.paths import PENGUINS_CONFIG, PENGUINS_CSV

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


def _split_counts_and_stats(source, stats_dir: str) -> tuple[dict, dict]:
    with TestPipeline() as p:
        out = p | ReadSplits(source, TRAIN_EVAL)
        _ = out.split_batches | GenerateSplitStatistics(stats_dir, TRAIN_EVAL.names)
        assert_that(out.dead_letter, equal_to([]), label="NoDeadLetters")
    stats = {name: tfdv.load_stats_binary(os.path.join(split_dir(stats_dir, name), STATS_FILE))
             for name in TRAIN_EVAL.names}
    return {name: s.datasets[0].num_examples for name, s in stats.items()}, stats


def _by_feature(stats) -> tuple:
    """A split's statistics as (example count, {feature: its statistics}): column order differs by source."""
    dataset = stats.datasets[0]
    return dataset.num_examples, {f.path.step[0]: f for f in dataset.features}


def _bigquery_penguins(bq_emulator, penguins_rows) -> str:
    """The penguins in a BigQuery (emulator) table; returns its id."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    from tests.support.penguins import PENGUIN_SCHEMA, penguin_records
    project = bq_emulator["project"]
    client = bigquery.Client(project=project, credentials=AnonymousCredentials(),
                             client_options=ClientOptions(api_endpoint=bq_emulator["rest"]))
    client.create_dataset("parity", exists_ok=True)
    table = client.create_table(bigquery.Table(f"{project}.parity.penguins", schema=[
        bigquery.SchemaField(column, kind) for column, kind in PENGUIN_SCHEMA]), exists_ok=True)
    assert client.insert_rows_json(table, penguin_records(penguins_rows)) == []
    return f"{project}.parity.penguins"


def test_every_source_gives_the_same_splits_and_statistics_as_csv(tmp_path, penguin_databases, bq_emulator,
                                                                   penguins_rows):
    """The penguins from CSV, Parquet, JSON Lines, TFRecord, PostgreSQL, MySQL and BigQuery: same split counts
    (the whole-record hash sees the same typed values) and the same TFDV statistics per split."""
    from beam_ml.ingest.bigquery import BigQuerySource
    from beam_ml.ingest.sql import Credentials, SqlSource
    types = PipelineConfig.load(PENGUINS_CONFIG, {}).column_types
    sources = {kind: FileSource.resolve(pattern, types) for kind, pattern in _penguin_copies(tmp_path).items()}
    for engine, server in penguin_databases.items():
        sources[engine] = SqlSource.resolve(
            server.url(driver=False), table=None, query=f"SELECT {PENGUIN_DB_COLUMNS} FROM penguins",
            partition_column="year", partitions=3, credentials=Credentials(password_file=server.password_file),
            column_types=types)
    sources["bigquery"] = BigQuerySource.resolve(f"bigquery:{_bigquery_penguins(bq_emulator, penguins_rows)}",
                                                 None, None, "DIRECT_READ", types)
    counts, stats = {}, {}
    for kind, source in sources.items():
        counts[kind], stats[kind] = _split_counts_and_stats(source, str(tmp_path / f"stats_{kind}"))
    assert counts["csv"]["train"] + counts["csv"]["eval"] == 344
    for kind in sources:
        assert counts[kind] == counts["csv"], kind
        for name in TRAIN_EVAL.names:
            # Rows arrive in another order from partitioned reads: sums agree to rounding (std_dev's last digit).
            _assert_close(_as_dict(stats[kind][name]), _as_dict(stats["csv"][name]), f"{kind}/{name}")


def _as_dict(stats) -> dict:
    from google.protobuf import json_format
    count, features = _by_feature(stats)
    return {"count": count, **{name: json_format.MessageToDict(f) for name, f in features.items()}}


def _assert_close(a, b, where: str) -> None:
    if isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-12), (where, a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), (where, sorted(a.keys() ^ b.keys()))
        for key in a:
            _assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


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
        out = p | ReadSplits(FileSource(files, fmt), HashSplit((("all", 1),)))
        assert_that(out.records_read | beam.CombineGlobally(sum), equal_to([5]), label="Read")
        assert_that(out.splits["all"] | beam.Map(lambda b: b.num_rows) | "Rows" >> beam.CombineGlobally(sum),
                    equal_to([2]), label="Rows")
        assert_that(out.dead_letter | beam.Map(lambda d: (d.line, d.reason.split(":")[0])),
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
        out = p | ReadSplits(FileSource(files, fmt), HashSplit((("all", 1),)))
        assert_that(out.records_read | beam.CombineGlobally(sum), equal_to([4]), label="Read")
        assert_that(out.dead_letter | beam.Map(lambda d: d.line), equal_to([2, 4]), label="DeadLetters")


@pytest.mark.parametrize("kind", ["parquet", "jsonl", "tfrecord"])
def test_the_training_job_accepts_parquet_and_jsonl_input(tmp_path, capsys, kind):
    from jobs.train_pipeline import main
    pattern = _penguin_copies(tmp_path)[kind]
    assert main(["--config", PENGUINS_CONFIG, "--input", pattern, "--output_dir", str(tmp_path / "runs"),
                 "--serving_dir", str(tmp_path / "serving"), "--validate_only"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["columns"]["species"] == "string" and plan["columns"]["body_mass_g"] == "float"


TAXI_CSV = os.path.join(os.path.dirname(PENGUINS_CSV), "..", "..", "taxi", "data", "taxi.csv")


def test_a_time_split_puts_each_trip_in_the_split_of_its_start_time(tmp_path):
    from beam_ml.core.times import parse_time
    from beam_ml.ingest.split import TimeSplit
    frame = pd.read_csv(TAXI_CSV)
    cutoffs = (("train", parse_time("2015-01-01")), ("eval", parse_time("2016-01-01")), ("test", None))
    expected = {"train": int((frame.trip_start_timestamp < cutoffs[0][1]).sum()),
                "eval": int(((frame.trip_start_timestamp >= cutoffs[0][1]) &
                             (frame.trip_start_timestamp < cutoffs[1][1])).sum()),
                "test": int((frame.trip_start_timestamp >= cutoffs[1][1]).sum())}
    assert min(expected.values()) > 100
    split = TimeSplit(cutoffs, "trip_start_timestamp")
    with TestPipeline() as p:
        out = p | ReadSplits(FileSource.resolve(TAXI_CSV, {}), split)
        for name, count in expected.items():
            assert_that(out.splits[name] | f"Rows{name}" >> beam.Map(lambda b: b.num_rows) | f"Sum{name}" >>
                        beam.CombineGlobally(sum), equal_to([count]), label=f"Count{name}")
            assert_that(out.splits[name] | f"Latest{name}" >> beam.Map(
                            lambda b, n=name: (n, max(v[0] for v in b.column("trip_start_timestamp").to_pylist())))
                        | f"Check{name}" >> beam.Map(lambda kv: kv[1] < dict(cutoffs)[kv[0]] if dict(cutoffs)[kv[0]]
                                                     else True)
                        | f"All{name}" >> beam.CombineGlobally(all), equal_to([True]), label=f"Before{name}")


def test_pre_split_inputs_keep_their_split_and_leakage_is_still_checked(tmp_path):
    from beam_ml.ingest.resolve import resolve_source
    from beam_ml.ingest.split import GivenSplit
    from beam_ml.train.leakage import CheckLeakage
    with open(PENGUINS_CSV) as f:
        header, *rows = f.read().splitlines()
    for name, part in (("train", rows[:200]), ("eval", rows[190:])):  # ten rows in both
        (tmp_path / name).mkdir()
        (tmp_path / name / "part.csv").write_text("\n".join([header, *part]) + "\n")
    settings = yaml.safe_load(open(PENGUINS_CONFIG))
    del settings["input"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(settings))
    config = PipelineConfig.load(str(tmp_path / "config.yaml"), {
        "input_splits": {"train": str(tmp_path / "train" / "*.csv"), "eval": str(tmp_path / "eval" / "*.csv")}})
    source = resolve_source(config, config.column_types).source
    assert [(e["split"], os.path.basename(e["path"])) for e in source.describe()] == [("train", "part.csv"),
                                                                                      ("eval", "part.csv")]
    with TestPipeline() as p:
        out = p | ReadSplits(source, GivenSplit(("train", "eval")))
        for name, count in (("train", 200), ("eval", 154)):
            assert_that(out.splits[name] | f"Rows{name}" >> beam.Map(lambda b: b.num_rows) | f"Sum{name}" >>
                        beam.CombineGlobally(sum), equal_to([count]), label=f"Count{name}")
        leaks = out.split_batches | CheckLeakage("island")
        assert_that(leaks | beam.Map(lambda leak: leak["keys_in_several_splits"] > 0), equal_to([True]),
                    label="Leaks")


def test_a_file_matched_by_two_splits_is_rejected(tmp_path):
    from beam_ml.core.errors import ConfigError
    from beam_ml.ingest.resolve import resolve_source
    (tmp_path / "data").mkdir()
    with open(PENGUINS_CSV) as f:
        (tmp_path / "data" / "all.csv").write_text(f.read())
    settings = yaml.safe_load(open(PENGUINS_CONFIG))
    del settings["input"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(settings))
    config = PipelineConfig.load(str(tmp_path / "config.yaml"), {
        "input_splits": {"train": str(tmp_path / "data" / "*.csv"), "eval": str(tmp_path / "data" / "all*")}})
    with pytest.raises(ConfigError, match="^--input_splits: .*all.csv is matched by both 'train' and 'eval'"):
        resolve_source(config, config.column_types)


def test_a_background_map_runs_one_element_ahead_and_keeps_order_and_windows():
    from apache_beam.transforms.window import GlobalWindow, IntervalWindow

    from beam_ml.ingest.background import BackgroundMap
    started = []

    def tens(element):
        started.append(element)
        return [element * 10, element * 10 + 1]

    mapped = BackgroundMap(tens)
    assert list(mapped.add(1, GlobalWindow(), 5)) == []  # nothing before element 1
    second = [(w.value, w.timestamp, list(w.windows)) for w in mapped.add(2, IntervalWindow(0, 9), 6)]
    assert second == [(10, 5, [GlobalWindow()]), (11, 5, [GlobalWindow()])]
    rest = [(w.value, w.timestamp, list(w.windows)) for w in mapped.finish()]
    assert rest == [(20, 6, [IntervalWindow(0, 9)]), (21, 6, [IntervalWindow(0, 9)])]
    assert started == [1, 2]


def test_a_background_map_raises_the_error_of_its_function_in_the_callers_thread():
    from apache_beam.transforms.window import GlobalWindow

    from beam_ml.ingest.background import BackgroundMap

    def parse(element):
        if element == "bad":
            raise ValueError("bad chunk")
        yield element

    mapped = BackgroundMap(parse)
    assert list(mapped.add("good", GlobalWindow(), 0)) == []
    assert [w.value for w in mapped.add("bad", GlobalWindow(), 0)] == ["good"]
    with pytest.raises(ValueError, match="bad chunk"):
        list(mapped.finish())


def test_closing_a_background_map_of_a_failed_bundle_ends_its_thread():
    from apache_beam.transforms.window import GlobalWindow

    from beam_ml.ingest.background import BackgroundMap

    mapped = BackgroundMap(lambda element: range(5))  # more results than its queue holds: the thread blocks
    assert list(mapped.add("a", GlobalWindow(), 0)) == []
    mapped.add("b", GlobalWindow(), 0)  # never iterated, as when the bundle fails downstream
    mapped.close()
    assert not mapped._thread.is_alive()


def test_gzip_csv_and_json_lines_read_like_the_plain_files_and_gzip_parquet_is_refused(tmp_path):
    import gzip
    import shutil
    types = PipelineConfig.load(PENGUINS_CONFIG, {}).column_types
    copies = _penguin_copies(tmp_path)
    (tmp_path / "gz").mkdir()
    with open(PENGUINS_CSV, "rb") as f, gzip.open(tmp_path / "gz" / "penguins.csv.gz", "wb") as out:
        shutil.copyfileobj(f, out)
    with open(tmp_path / "jsonl" / "penguins.jsonl", "rb") as f, \
            gzip.open(tmp_path / "gz" / "penguins.jsonl.gz", "wb") as out:
        shutil.copyfileobj(f, out)
    plain = _split_counts_and_stats(FileSource.resolve(copies["csv"], types), str(tmp_path / "stats_csv"))
    for name in ("csv", "jsonl"):
        source = FileSource.resolve(str(tmp_path / "gz" / f"penguins.{name}.gz"), types)
        assert source.fmt.columns == FileSource.resolve(copies[name], types).fmt.columns
        counts, stats = _split_counts_and_stats(source, str(tmp_path / f"stats_gz_{name}"))
        assert counts == plain[0]
        for split in TRAIN_EVAL.names:
            _assert_close(_as_dict(stats[split]), _as_dict(plain[1][split]), f"{name}.gz/{split}")

    with gzip.open(tmp_path / "bad.csv.gz", "wt") as out:
        out.write("name,n\na,1\nb,two\nc,3\n")
    files, fmt = resolve_files(str(tmp_path / "bad.csv.gz"), {"n": "int"})
    with TestPipeline() as p:
        out = p | ReadSplits(FileSource(files, fmt), HashSplit((("all", 1),)))
        assert_that(out.dead_letter | beam.Map(lambda d: (d.line, d.raw)), equal_to([(3, "b,two")]))

    pq.write_table(pa.table({"x": [1]}), tmp_path / "t.parquet")
    with open(tmp_path / "t.parquet", "rb") as f, gzip.open(tmp_path / "t.parquet.gz", "wb") as out:
        shutil.copyfileobj(f, out)
    with pytest.raises(ValueError, match=r"t.parquet.gz: a gzip-compressed parquet file is not read"):
        resolve_files(str(tmp_path / "t.parquet.gz"), {})
