"""File sources on gs://, against the GCS emulator (Beam's gcsio reaches it via STORAGE_EMULATOR_HOST)."""
import apache_beam as beam
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_ml.config.train import PipelineConfig
from beam_ml.ingest.files.source import FileSource
from beam_ml.ingest.read import ReadSplits
from beam_ml.ingest.resolve import resolve_source
from beam_ml.ingest.split import HashSplit
from tests.support.paths import PENGUINS_CONFIG, PENGUINS_CSV

BUCKET = "beam-ml-sources"
TRAIN_EVAL = HashSplit((("train", 2), ("eval", 1)))


@pytest.fixture(scope="module")
def bucket(gcs_emulator, tmp_path_factory):
    """A bucket holding the penguins as CSV (spans 1 and 2) and as Parquet."""
    from tests.support import emulators
    emulators.patch_auth()  # anonymous credentials: gcsio would otherwise spend ~30 s looking for some
    emulators.ensure_bucket(BUCKET, gcs_emulator["url"])
    with open(PENGUINS_CSV, "rb") as f:
        data = f.read()
    header, *rows = data.splitlines(keepends=True)
    local = tmp_path_factory.mktemp("parquet") / "penguins.parquet"
    pq.write_table(pa_csv.read_csv(PENGUINS_CSV, convert_options=pa_csv.ConvertOptions(null_values=["NA"])), local,
                   row_group_size=100)
    for path, content in ((f"gs://{BUCKET}/csv/span-1/penguins.csv", header + b"".join(rows[:100])),
                          (f"gs://{BUCKET}/csv/span-2/penguins.csv", data),
                          (f"gs://{BUCKET}/parquet/penguins.parquet", local.read_bytes())):
        with FileSystems.create(path) as f:
            f.write(content)
    return f"gs://{BUCKET}"


def test_csv_and_parquet_on_gcs_read_like_local_files(bucket):
    types = PipelineConfig.load(PENGUINS_CONFIG, {}).column_types
    local = FileSource.resolve(PENGUINS_CSV, types)
    csv = FileSource.resolve(f"{bucket}/csv/span-2/*.csv", types)
    parquet = FileSource.resolve(f"{bucket}/parquet/*.parquet", types)
    assert csv.files[0].sha256 == local.files[0].sha256 and csv.fmt == local.fmt
    assert len(parquet.chunks()) == 4 and parquet.fmt.columns == local.fmt.columns
    expected = {"train": 243, "eval": 101}  # the bundled data's split, as the demo prints it
    with TestPipeline() as p:
        for label, source in (("local", local), ("csv", csv), ("parquet", parquet)):
            out = p | label >> ReadSplits(source, TRAIN_EVAL)
            assert_that(out.dead_letter, equal_to([]), label=f"{label}NoDeadLetters")
            for name, count in expected.items():
                assert_that(out.splits[name] | f"{label}Rows{name}" >> beam.Map(lambda b: b.num_rows)
                            | f"{label}Sum{name}" >> beam.CombineGlobally(sum), equal_to([count]),
                            label=f"{label}Count{name}")


def test_spans_resolve_on_gcs(bucket):
    config = PipelineConfig.load(PENGUINS_CONFIG, {"input": f"{bucket}/csv/span-{{SPAN}}/*.csv", "spans": "last:2"})
    resolved = resolve_source(config, config.column_types)
    assert resolved.span_selection.spans == (1, 2)
    assert [f.path for f in resolved.source.files] == [f"{bucket}/csv/span-1/penguins.csv",
                                                       f"{bucket}/csv/span-2/penguins.csv"]
