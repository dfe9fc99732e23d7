"""File sources on gs://, against the GCS emulator (Beam's gcsio reaches it via STORAGE_EMULATOR_HOST)."""
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems

from beam_ml.config.train import PipelineConfig
from beam_ml.ingest.files.source import FileSource
from beam_ml.ingest.resolve import resolve_source
from tests.support.paths import PENGUINS_CONFIG, PENGUINS_CSV
from tests.support.sources import assert_each_reads_the_penguin_splits

BUCKET = "beam-ml-sources"


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
    assert_each_reads_the_penguin_splits({"local": local, "csv": csv, "parquet": parquet})


def test_spans_resolve_on_gcs(bucket):
    config = PipelineConfig.load(PENGUINS_CONFIG, {"input": f"{bucket}/csv/span-{{SPAN}}/*.csv", "spans": "last:2"})
    resolved = resolve_source(config, config.column_types)
    assert resolved.span_selection.spans == (1, 2)
    assert [f.path for f in resolved.source.files] == [f"{bucket}/csv/span-1/penguins.csv",
                                                       f"{bucket}/csv/span-2/penguins.csv"]
