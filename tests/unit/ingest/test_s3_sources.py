"""File sources on s3://, against a real S3 API server on loopback (moto), through Beam's own S3 filesystem with the
credentials and endpoint from AWS's standard environment: the same files, splits and statistics as from local disk
(CSV, Parquet, JSON Lines and TFRecord; spans), a whole training run from S3 whose record holds no credential, and
a missing bucket or a denied key failing at launch, naming the input."""
import glob
import gzip
import json
import os

import apache_beam as beam
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from beam_ml.config.train import PipelineConfig
from beam_ml.core.layout import STATS_FILE, split_dir
from beam_ml.ingest.files.source import FileSource
from beam_ml.ingest.read import ReadSplits
from beam_ml.ingest.resolve import resolve_source
from beam_ml.train.validate import GenerateSplitStatistics
from tests.support.jobs import run_job
from tests.support.paths import PENGUINS_CONFIG, PENGUINS_CSV
from tests.support.sources import SPLITS, TRAIN_EVAL, assert_each_reads_the_penguin_splits

BUCKET = "beam-ml-sources"


@pytest.fixture(scope="module")
def bucket(s3_server, tmp_path_factory):
    """A bucket holding the penguins as CSV (spans 1 and 2), Parquet, JSON Lines (gzip) and TFRecord."""
    import boto3
    FileSystems.set_options(PipelineOptions([]))  # as a job does at launch: S3 takes its options from there
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    with open(PENGUINS_CSV, "rb") as f:
        data = f.read()
    header, *rows = data.splitlines(keepends=True)
    table = pa_csv.read_csv(PENGUINS_CSV, convert_options=pa_csv.ConvertOptions(null_values=["NA"]))
    parquet = tmp_path_factory.mktemp("parquet") / "penguins.parquet"
    pq.write_table(table, parquet, row_group_size=100)
    jsonl = gzip.compress("".join(json.dumps(row) + "\n" for row in table.to_pylist()).encode())
    tfrecord = tmp_path_factory.mktemp("tfrecord") / "penguins.tfrecord"
    types = PipelineConfig.load(PENGUINS_CONFIG, {}).column_types  # tf.Examples of the config's types
    lists = {"string": lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()])),
             "int": lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=[v])),
             "float": lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=[v]))}
    with tf.io.TFRecordWriter(str(tfrecord)) as writer:
        for row in table.to_pylist():
            features = {name: lists[types[name]](value) for name, value in row.items() if value is not None}
            writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    for path, content in ((f"s3://{BUCKET}/csv/span-1/penguins.csv", header + b"".join(rows[:100])),
                          (f"s3://{BUCKET}/csv/span-2/penguins.csv", data),
                          (f"s3://{BUCKET}/parquet/penguins.parquet", parquet.read_bytes()),
                          (f"s3://{BUCKET}/jsonl/penguins.jsonl.gz", jsonl),
                          (f"s3://{BUCKET}/tfrecord/penguins.tfrecord", tfrecord.read_bytes())):
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:  # bytes as given
            f.write(content)
    yield f"s3://{BUCKET}"
    FileSystems.set_options(None)


def test_every_file_kind_on_s3_reads_like_local_files(bucket):
    types = PipelineConfig.load(PENGUINS_CONFIG, {}).column_types
    local = FileSource.resolve(PENGUINS_CSV, types)
    sources = {kind: FileSource.resolve(f"{bucket}/{kind}/{glob_}", types)
               for kind, glob_ in (("csv", "span-2/*.csv"), ("parquet", "*.parquet"), ("jsonl", "*.jsonl.gz"),
                                   ("tfrecord", "*.tfrecord"))}
    assert sources["csv"].files[0].sha256 == local.files[0].sha256 and sources["csv"].fmt == local.fmt
    assert_each_reads_the_penguin_splits({"local": local, **sources})


def test_csv_on_s3_gives_the_statistics_of_the_local_file(bucket, tmp_path):
    types = PipelineConfig.load(PENGUINS_CONFIG, {}).column_types
    with TestPipeline() as p:
        for label, pattern in (("local", PENGUINS_CSV), ("s3", f"{bucket}/csv/span-2/*.csv")):
            out = p | label >> ReadSplits(FileSource.resolve(pattern, types), TRAIN_EVAL)
            _ = ([out.splits[name] | f"{label}Key{name}" >> beam.Map(lambda b, n=name: (n, b)) for name in SPLITS]
                 | f"{label}Flatten" >> beam.Flatten()
                 | f"{label}Stats" >> GenerateSplitStatistics(str(tmp_path / label), list(SPLITS)))
    for name in SPLITS:
        local, remote = (tf.io.gfile.GFile(os.path.join(split_dir(str(tmp_path / label), name), STATS_FILE), "rb")
                         .read() for label in ("local", "s3"))
        assert local == remote, name


def test_spans_resolve_on_s3(bucket):
    config = PipelineConfig.load(PENGUINS_CONFIG, {"input": f"{bucket}/csv/span-{{SPAN}}/*.csv", "spans": "last:2"})
    resolved = resolve_source(config, config.column_types)
    assert resolved.span_selection.spans == (1, 2)
    assert [f.path for f in resolved.source.files] == [f"{bucket}/csv/span-1/penguins.csv",
                                                       f"{bucket}/csv/span-2/penguins.csv"]


def test_a_training_run_reads_s3_and_its_record_holds_no_credential(bucket, s3_server, tmp_path):
    """The keys given as Beam's --s3_* flags (as a user may) and in the environment appear nowhere the run wrote."""
    secret = "flag-secret-for-the-record-test"
    code, record = run_job("--config", PENGUINS_CONFIG, "--input", f"{bucket}/csv/span-{{SPAN}}/*.csv",
                           "--output_dir", str(tmp_path / "runs"), "--serving_dir", str(tmp_path / "serving"),
                           "--run_id", "from-s3", "--s3_access_key_id", "flag-key", "--s3_secret_access_key", secret,
                           "--s3_endpoint_url", s3_server["url"], "--s3_region_name", "us-east-1")
    assert code == 0, record.get("error")
    assert record["counts"]["splits"] == SPLITS and record["span_selection"]["spans"] == [2]
    assert record["inputs"][0]["path"] == f"{bucket}/csv/span-2/penguins.csv"
    for path in glob.glob(str(tmp_path / "**" / "*"), recursive=True):
        if os.path.isfile(path) and os.path.getsize(path) < 50 << 20:
            with open(path, "rb") as f:
                content = f.read()
            for credential in (secret, s3_server["AWS_SECRET_ACCESS_KEY"]):
                assert credential.encode() not in content, path


@pytest.mark.parametrize("problem", ["missing bucket", "denied key"])
def test_an_unreadable_s3_input_fails_at_launch_naming_it(bucket, s3_server, tmp_path, tmp_path_factory, capsys,
                                                          problem):
    from tests.support import emulators
    server, url = None, s3_server["url"]
    if problem == "denied key":  # a server that knows no key, as AWS answers an unknown or revoked one
        server, url, _ = emulators.start_s3(str(tmp_path_factory.mktemp("s3_denied")), check_credentials=True)
    pattern = f"s3://{'no-such-bucket' if problem == 'missing bucket' else BUCKET}/csv/*/*.csv"
    try:
        code, _ = run_job("--config", PENGUINS_CONFIG, "--input", pattern, "--output_dir", str(tmp_path / "runs"),
                          "--run_id", "unreadable", "--s3_endpoint_url", url, "--validate_only")
    finally:
        if server:
            server.stop()
    error = capsys.readouterr().err
    assert code == 2 and error.startswith("error: --input: "), error
    assert ("matches no files" if problem == "missing bucket" else "InvalidAccessKeyId") in error, error
    assert not (tmp_path / "runs").exists()
