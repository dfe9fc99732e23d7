import hashlib
import json
import os

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_ml.ingest.files.source import (
    FileSource,
    InputFile,
    count_lines_before,
    plan_chunks,
    read_chunk,
    resolve_files,
)
from beam_ml.ingest.read import ReadSplits
from beam_ml.ingest.split import HashSplit
from tests.support.paths import PENGUINS_CSV

TRAIN_EVAL = HashSplit((("train", 2), ("eval", 1)))


def _write(path, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return str(path)


@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, 1000, 1 << 20])
def test_chunks_own_every_line_exactly_once(tmp_path, chunk_bytes):
    path = _write(tmp_path / "x.csv", "h1,h2\n" + "".join(f"{i},{'y' * (i % 13)}\n" for i in range(200)))
    size = os.path.getsize(path)
    lines, starts = [], []
    for chunk in plan_chunks(InputFile(path, size, "unused"), chunk_bytes):
        data, begin, has_header = read_chunk(chunk)
        if has_header:
            header, _, data = data.partition(b"\n")
            assert header == b"h1,h2"
            begin += len(header) + 1
        if data:
            starts.append((count_lines_before(path, begin), data.count(b"\n")))
        lines += data.splitlines()
    assert lines == [f"{i},{'y' * (i % 13)}".encode() for i in range(200)]
    # each chunk knows the line number it starts at
    assert all(start == 1 + sum(n for _, n in starts[:i]) for i, (start, _) in enumerate(starts))


def test_resolve_rejects_no_files_header_only_and_different_headers(tmp_path):
    with pytest.raises(ValueError, match="matches no files"):
        resolve_files(str(tmp_path / "none*.csv"), {})
    _write(tmp_path / "a.csv", "x,y\n")
    with pytest.raises(ValueError, match="no data rows"):
        resolve_files(str(tmp_path / "a.csv"), {})
    _write(tmp_path / "b.csv", "x,z\n1,2\n")
    with pytest.raises(ValueError, match="differs"):
        resolve_files(str(tmp_path / "*.csv"), {})


def test_a_utf8_bom_is_not_part_of_the_first_column(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfx,y\r\n1,a\r\n2,b\r\n")
    files, fmt = resolve_files(str(path), {})
    assert fmt.columns == ("x", "y")
    with TestPipeline() as p:
        out = p | ReadSplits(FileSource(files, fmt), HashSplit((("all", 1),)))
        assert_that(out.splits["all"] | beam.Map(_rows), equal_to([2]), label="Rows")
        assert_that(out.dead_letter, equal_to([]), label="NoDeadLetters")


def test_resolve_fingerprints_content(tmp_path):
    path = _write(tmp_path / "a.csv", "x,y\n1,2\n")
    files, fmt = resolve_files(path, {})
    assert files[0].sha256 == hashlib.sha256(b"x,y\n1,2\n").hexdigest() and files[0].size == 8
    assert fmt.columns == ("x", "y") and fmt.types == ("int", "int")


def _rows(batch):
    return batch.num_rows


def test_read_csv_splits_counts_add_up_with_small_chunks(tmp_path):
    good = open(PENGUINS_CSV).read().splitlines()
    bad = ["Adelie,Torgersen,1.0", "Adelie,Torgersen,x,18,181,3750,male,2007", 'Adelie,"Torgersen,39,18,181']
    lines = good[:100] + bad[:1] + good[100:200] + bad[1:] + good[200:]
    path = _write(tmp_path / "p.csv", "\n".join(lines) + "\n")
    files, fmt = resolve_files(path, {"bill_length_mm": "float"})
    with TestPipeline() as p:
        out = p | ReadSplits(FileSource(files, fmt, 2048), TRAIN_EVAL)
        rows = ((out.splits["train"], out.splits["eval"]) | beam.Flatten() | beam.Map(_rows) | beam.CombineGlobally(sum))
        assert_that(rows, equal_to([344]), label="Rows")
        assert_that(out.records_read | "Read" >> beam.CombineGlobally(sum), equal_to([347]), label="Read")
        assert_that(out.dead_letter | beam.Map(lambda d: (d.line, d.raw)),
                    equal_to([(101, bad[0]), (202, bad[1]), (203, bad[2])]), label="DeadLetters")


def test_quoted_headers_and_glob_characters_in_file_names(tmp_path):
    path = tmp_path / "part[1].csv"
    path.write_bytes(b'"x","y"\n1,a\n2,b\n')
    files, fmt = resolve_files(str(tmp_path / "part*.csv"), {})
    assert fmt.columns == ("x", "y") and files[0].path == str(path)
    with TestPipeline() as p:
        out = p | ReadSplits(FileSource(files, fmt), HashSplit((("all", 1),)))
        assert_that(out.splits["all"] | beam.Map(_rows), equal_to([2]), label="Rows")


def test_batches_travel_with_a_coder_that_measures_them_without_encoding(tmp_path):
    """Beam measures sampled elements of every PCollection; the batches' coder must not copy a batch to do it."""
    import pyarrow as pa
    from apache_beam.coders import TupleCoder, registry

    from beam_ml.core.records import RecordBatchCoder
    from beam_ml.train import validate  # noqa: F401  (imports TFDV, which registers its own coder for pa.RecordBatch)
    files, fmt = resolve_files(PENGUINS_CSV, {})
    p = beam.Pipeline()
    out = p | ReadSplits(FileSource(files, fmt), TRAIN_EVAL)
    assert registry.get_coder(out.splits["train"].element_type) == RecordBatchCoder()
    assert registry.get_coder(out.split_batches.element_type) == TupleCoder(
        [registry.get_coder(str), RecordBatchCoder()])
    batch = pa.RecordBatch.from_pydict({"x": pa.array([[1], None, [3]], pa.large_list(pa.int64()))})
    coder = RecordBatchCoder()
    assert coder.decode(coder.encode(batch)).equals(batch)
    assert coder.estimate_size(batch) == batch.nbytes


def test_infinite_and_out_of_range_floats_are_dead_letters_and_the_counts_add_up(tmp_path):
    """`inf`, `-inf` and a number beyond float32's range (it reads as infinite) would skew statistics, transforms
    and training: their rows are dead letters naming the column (issue 22, point 5); missing values stay missing."""
    path = _write(tmp_path / "f.csv", "x,y,z\n1.5,a,1\ninf,b,2\n2.5,c,3\n-inf,d,4\n1e40,e,5\n,f,6\nNaN,g,7\n")
    files, fmt = resolve_files(path, {"x": "float"})
    with TestPipeline() as p:
        out = p | ReadSplits(FileSource(files, fmt), HashSplit((("all", 1),)))
        assert_that(out.splits["all"] | beam.FlatMap(lambda b: b.column("y").to_pylist()),
                    equal_to([[b"a"], [b"c"], [b"f"], [b"g"]]), label="Kept")
        assert_that(out.dead_letter | beam.Map(lambda d: (d.reason, json.loads(d.raw)["y"])), equal_to([
            ("column 'x' is inf, not a finite float32", "b"), ("column 'x' is -inf, not a finite float32", "d"),
            ("column 'x' is inf, not a finite float32", "e")]), label="DeadLetters")
        assert_that(out.records_read | beam.CombineGlobally(sum), equal_to([7]), label="Read")


def test_a_column_allowed_non_finite_keeps_them(tmp_path):
    path = _write(tmp_path / "f.csv", "x,y\n1.5,a\ninf,b\n-inf,c\n1e40,d\n")
    files, fmt = resolve_files(path, {"x": "float"})
    with TestPipeline() as p:
        out = p | ReadSplits(FileSource(files, fmt), HashSplit((("all", 1),)), allow_non_finite=["x"])
        assert_that(out.splits["all"] | beam.FlatMap(lambda b: [v[0] for v in b.column("x").to_pylist()]),
                    equal_to([1.5, float("inf"), float("-inf"), float("inf")]), label="Kept")
        assert_that(out.dead_letter, equal_to([]), label="NoDeadLetters")


def test_allow_non_finite_must_name_float_columns_of_the_input(tmp_path, capsys):
    from tests.support.jobs import job_args, run_job
    code, _ = run_job(*job_args(tmp_path, "check", allow_non_finite='["year"]'), "--validate_only")
    assert code == 2 and "--allow_non_finite: column 'year' is 'int', not a float column" in capsys.readouterr().err
    code, _ = run_job(*job_args(tmp_path, "check", allow_non_finite='["nope"]'), "--validate_only")
    assert code == 2 and "--allow_non_finite: column 'nope' is not in the input header" in capsys.readouterr().err
    code, _ = run_job(*job_args(tmp_path, "check", allow_non_finite='["body_mass_g"]'), "--validate_only")
    assert code == 0
