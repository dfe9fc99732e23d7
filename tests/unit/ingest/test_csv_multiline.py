"""CSV as RFC 4180 has it: quoted fields may hold newlines, commas and doubled quotes. Such a record is one row,
whichever byte ranges the file is cut into; `read` counts records; a record is named by the line it starts on
(issue 22, point 5)."""
import csv
import io

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam_ml.ingest.files.source import FileSource, plan_chunks, resolve_files
from beam_ml.ingest.read import ReadSplits
from beam_ml.ingest.split import HashSplit

ALL = HashSplit((("all", 1),))


def _csv(rows) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([["x", "y"], *rows])
    return out.getvalue().encode()


def _rows_of(files, fmt, chunk_bytes):
    rows, read, dead = [], 0, []
    for file in files:
        for chunk in plan_chunks(file, chunk_bytes):
            for parsed in chunk.parse(fmt):
                read += parsed.records_read
                dead += parsed.dead_letters
                rows += [(r["x"][0].decode() if r["x"] else None, r["y"][0].decode() if r["y"] else None)
                         for r in parsed.batch.to_pylist()]
    return rows, read, dead


FIELD = st.text(alphabet='ab,"\n ', max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(FIELD, FIELD), min_size=1, max_size=30), step=st.integers(1, 40),
       chunk=st.integers(1, 120))
def test_every_record_is_one_row_whatever_the_cut(tmp_path, rows, step, chunk):
    path = tmp_path / "quoted.csv"
    path.write_bytes(_csv(rows))
    files, fmt = resolve_files(str(path), {"x": "string", "y": "string"}, parity_step=step)
    got, read, dead = _rows_of(files, fmt, chunk)
    assert dead == [] and read == len(rows)
    assert got == [(x or None, y or None) for x, y in rows]  # an empty field is a missing value


def test_a_multiline_file_is_read_by_the_job_counting_records_and_naming_lines(tmp_path):
    rows = [["a", "one line"], ["b", "two\nlines"], ["c", 'a "quoted"\nthree\nlines'], ["d", "x"]]
    text = _csv(rows).decode().replace("d,x\n", "d,x,extra\n")  # a bad record, on line 8
    path = tmp_path / "notes.csv"
    path.write_text(text)
    files, fmt = resolve_files(str(path), {}, parity_step=8)
    assert files[0].record_parity is not None
    with TestPipeline() as p:
        out = p | ReadSplits(FileSource(files, fmt, chunk_bytes=16), ALL)
        assert_that(out.records_read | beam.CombineGlobally(sum), equal_to([4]), label="Read")
        assert_that(out.splits["all"] | beam.FlatMap(lambda b: [r["y"][0].decode() for r in b.to_pylist()]),
                    equal_to(["one line", "two\nlines", 'a "quoted"\nthree\nlines']), label="Rows")
        assert_that(out.dead_letter | beam.Map(lambda d: (d.line, d.raw)), equal_to([(8, "d,x,extra")]),
                    label="DeadLetters")


def test_a_stray_quote_leaves_the_file_read_as_lines(tmp_path):
    path = tmp_path / "stray.csv"
    path.write_text('x,y\na,5" pipe\nb,ok\n')
    files, fmt = resolve_files(str(path), {})
    assert files[0].record_parity is None  # unbalanced quotes: not a multi-line file
    rows, read, dead = _rows_of(files, fmt, 8 << 20)
    assert read == 2 and [r[0] for r in rows] + [d.line for d in dead] in (["a", "b"], ["b", 2])


def test_a_quoted_newline_is_found_across_the_blocks_a_file_is_read_in():
    from beam_ml.ingest.files.csv_format import quoted_newline_in
    assert quoted_newline_in(b'ab\ncd"', 1)  # the field opened in an earlier block
    assert not quoted_newline_in(b"ab\ncd", 0)
    assert quoted_newline_in(b'a"b\nc"d', 0) and quoted_newline_in(b'a"b\nc', 0)
    assert not quoted_newline_in(b'a"b"\nc"d""e"\n', 0)
