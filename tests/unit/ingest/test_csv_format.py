import io

import pyarrow as pa
import pytest
from pyarrow import csv as pa_csv

from beam_ml.core.records import RecordFormat
from beam_ml.ingest.files.csv_format import NULL_VALUES, infer_csv_format, line_problem, parse_csv_chunk

FMT = RecordFormat(columns=("name", "count", "score"), types=("string", "int", "float"))


def _no_line_numbers():
    raise AssertionError("line numbers are only needed for bad lines")


def test_good_chunk_parses_in_bulk_to_list_columns():
    parsed = parse_csv_chunk(b'a,1,0.5\n"b, quoted",2,1e3\r\nNA,,nan\n\n', FMT, "f.csv", _no_line_numbers)
    assert parsed.batch.schema == FMT.arrow_schema()
    assert parsed.batch.column(0).to_pylist() == [[b"a"], [b"b, quoted"], None]
    assert parsed.batch.column(1).to_pylist() == [[1], [2], None]
    assert parsed.batch.column(2).to_pylist()[:2] == [[0.5], [1000.0]]
    assert parsed.dead_letters == [] and parsed.records_read == 3


def test_malformed_lines_are_dead_lettered_with_line_numbers_and_reasons():
    data = (b"a,1,0.5\n"          # line 10
            b"b,2\n"              # 11: too few columns
            b"c,x,1.0\n"          # 12: int column holds text
            b'd,"3,4.0\n'         # 13: unterminated quote (pyarrow would swallow the next lines)
            b"e,5,6.5\n"          # 14
            b"\n"                 # 15: empty, skipped
            b"f,6,7.5,extra\n"    # 16: too many columns
            b"g,7,8.5\n")         # 17
    parsed = parse_csv_chunk(data, FMT, "f.csv", lambda: 10)
    assert [(d.line, d.raw) for d in parsed.dead_letters] == [
        (11, "b,2"), (12, "c,x,1.0"), (13, 'd,"3,4.0'), (16, "f,6,7.5,extra")]
    reasons = [d.reason for d in parsed.dead_letters]
    assert "expected 3 columns, got 2" in reasons[0]
    assert "column 'count'" in reasons[1] and "'x'" in reasons[1]
    assert "quoting" in reasons[2]
    assert "got 4" in reasons[3]
    assert all(d.source == "f.csv" for d in parsed.dead_letters)
    assert parsed.batch.column(0).to_pylist() == [[b"a"], [b"e"], [b"g"]]
    assert parsed.records_read == parsed.batch.num_rows + len(parsed.dead_letters) == 7


@pytest.mark.parametrize("kind", ["int", "float"])
@pytest.mark.parametrize("value", ["1", "-3", "+3", " 4", "4 ", "1e3", "0x1F", "1_0", "inf", "-inf", "Infinity", "-Infinity", "nan", "NaN",
                                   "1.", ".5", "3.0", "1,5", "abc", "NA", "--1", "1e", "e3"])
def test_line_check_agrees_with_pyarrow(kind, value):
    fmt = RecordFormat(columns=("v",), types=(kind,))
    line = f'"{value}"' if "," in value else value
    try:
        pa_csv.read_csv(io.BytesIO(line.encode() + b"\n"), read_options=pa_csv.ReadOptions(column_names=["v"]),
                        convert_options=pa_csv.ConvertOptions(
                            column_types={"v": pa.int64() if kind == "int" else pa.float32()},
                            null_values=list(NULL_VALUES), strings_can_be_null=True,
                            quoted_strings_can_be_null=False))
        pyarrow_accepts = True
    except pa.ArrowInvalid:
        pyarrow_accepts = False
    assert (line_problem(line.encode(), fmt) is None) == pyarrow_accepts


def test_inference_reads_types_from_the_sample_and_honours_given_types():
    fmt = infer_csv_format(b"a,b,c,d", b"1,2.5,x,\n2,3,y,\n", {"a": "float"})
    assert fmt.columns == ("a", "b", "c", "d")
    assert fmt.types == ("float", "float", "string", "string")


@pytest.mark.parametrize("data", [b"", b"\n", b"a", b"a\n", b"a\n\nb", b"\n\na\n\n", b"a\nb\nc\n", b"x" * 10 + b"\n\n"])
def test_record_lengths_are_line_lengths_measured_without_splitting(data):
    from beam_ml.ingest.files.csv_format import record_lengths
    assert record_lengths(data).tolist() == [len(line) for line in data.split(b"\n")]


def test_a_parsed_chunk_is_measured_by_its_batch_and_round_trips():
    from beam_ml.core.chunks import ParsedChunkCoder
    parsed = parse_csv_chunk(b"a,1,0.5\nb,x,1\n", FMT, "f.csv", lambda: 1)
    coder = ParsedChunkCoder()
    decoded = coder.decode(coder.encode(parsed))
    assert decoded.batch.equals(parsed.batch) and decoded.dead_letters == parsed.dead_letters
    assert coder.estimate_size(parsed) == parsed.batch.nbytes + len("b,x,1")
