"""The BigQuery source: span placeholders as TFX binds them, BigQuery schemas → record formats, row dicts →
RecordBatches with dead letters, and tables and queries resolved and read through Beam's ReadFromBigQuery against
bqemulator (the `bq_emulator` fixture; its shim reaches the in-process DirectRunner only)."""
import datetime
import decimal
import json
import math
import uuid

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from google.cloud.bigquery import SchemaField

from beam_ml.core.records import RecordFormat
from beam_ml.ingest.bigquery import (
    BigQuerySource,
    bind_span_placeholders,
    parse_spec,
    qualify_table,
    row_json,
    rows_to_chunk,
    schema_to_format,
    to_float,
    to_int,
    to_text,
)
from tests.support.penguins import PENGUIN_SCHEMA, penguin_records

P = "test-project"
UTC = datetime.timezone.utc
DAY0 = 19783  # 2024-03-01
EVENT_SECONDS = (0, 43_200, 86_399)  # first, middle and last second of each day


# ---- pure functions ----------------------------------------------------------------------------------------------
def test_span_placeholders_are_bound_as_tfx_binds_them():
    # TFX's own expectations (example_gen/utils_test.py, testGetQueryForSpan) for one span.
    assert bind_span_placeholders("select * from table", 1, 1) == "select * from table"
    assert bind_span_placeholders("select * from table where date=@span_yyyymmdd_utc", 1, 1) == \
        "select * from table where date='19700102'"
    query = "ts>=TIMESTAMP_SECONDS(@span_begin_timestamp) and ts<TIMESTAMP_SECONDS(@span_end_timestamp)"
    assert bind_span_placeholders(query, 2, 2) == "ts>=TIMESTAMP_SECONDS(172800) and ts<TIMESTAMP_SECONDS(259200)"
    # A range: from the first day's start to the end of the last day (exclusive); the date is the first day's.
    assert bind_span_placeholders("@span_begin_timestamp @span_end_timestamp @span_yyyymmdd_utc", DAY0, DAY0 + 2) \
        == f"{DAY0 * 86400} {(DAY0 + 3) * 86400} '20240301'"
    for begin, end in ((3, 2), (-1, 2)):
        with pytest.raises(ValueError, match="span range"):
            bind_span_placeholders("@span_begin_timestamp", begin, end)


def test_specs_and_table_ids():
    assert parse_spec("bigquery:my-project") == ("my-project", None)
    assert parse_spec("bigquery:my-project.ds.t") == ("my-project", "my-project.ds.t")
    assert parse_spec("bigquery:my-project:ds.t") == ("my-project", "my-project.ds.t")
    assert parse_spec("bigquery:example.com:proj.ds.t") == ("example.com:proj", "example.com:proj.ds.t")
    for bad in ("bigquery:", "bigquery:my-project.ds", "bq:my-project", "bigquery:p.d.t.x"):
        with pytest.raises(ValueError, match="give bigquery:PROJECT"):
            parse_spec(bad)
    assert qualify_table("ds.t", "p") == "p.ds.t"
    assert qualify_table("other.ds.t", "p") == qualify_table("other:ds.t", "p") == "other.ds.t"
    with pytest.raises(ValueError, match="give DATASET.TABLE"):
        qualify_table("t", "p")


def test_bigquery_types_map_to_record_types():
    fields = [SchemaField(f"c_{t.lower()}", t) for t in (
        "INTEGER", "INT64", "BOOLEAN", "BOOL", "FLOAT", "FLOAT64", "NUMERIC", "BIGNUMERIC", "STRING", "BYTES",
        "DATE", "DATETIME", "TIMESTAMP", "TIME")]
    fmt = schema_to_format(fields, {"c_int64": "string"}, "bigquery:p.d.t")
    assert dict(zip(fmt.columns, fmt.types)) == {
        "c_integer": "int", "c_int64": "string", "c_boolean": "int", "c_bool": "int", "c_float": "float",
        "c_float64": "float", "c_numeric": "float", "c_bignumeric": "float", "c_string": "string",
        "c_bytes": "string", "c_date": "string", "c_datetime": "string", "c_timestamp": "string", "c_time": "string"}


@pytest.mark.parametrize("field, column_types, message", [
    (SchemaField("tags", "STRING", mode="REPEATED"), {}, "column 'tags' is REPEATED STRING"),
    (SchemaField("tags", "STRING", mode="REPEATED"), {"tags": "string"}, "column 'tags' is REPEATED"),
    (SchemaField("rec", "RECORD", fields=[SchemaField("x", "INT64")]), {}, "column 'rec' is NULLABLE RECORD"),
    (SchemaField("g", "GEOGRAPHY"), {}, "column 'g' has BigQuery type GEOGRAPHY.*column_types"),
    (SchemaField("n", "INT64"), {"n": "double"}, "column_types: 'n' is 'double'"),
])
def test_columns_that_cannot_be_read_are_named(field, column_types, message):
    with pytest.raises(ValueError, match=message):
        schema_to_format([field], column_types, "bigquery:p.d.t")


def test_values_convert_to_record_types_or_say_why_not():
    assert [to_int(v) for v in (7, True, 3.0, decimal.Decimal("3.000"), " -42 ")] == [7, 1, 3, 3, -42]
    for bad, reason in ((2.5, "not an integer"), (math.nan, "not an integer"), ("4.2", "not an integer"),
                        (datetime.date(2024, 3, 1), "not an integer"), (1 << 63, "out of the int64 range"),
                        (decimal.Decimal("1e30"), "out of the int64 range")):
        with pytest.raises(ValueError, match=reason):
            to_int(bad)
    assert [to_float(v) for v in (1, 1.5, decimal.Decimal("2.25"), "1e3", False)] == [1.0, 1.5, 2.25, 1000.0, 0.0]
    assert math.isnan(to_float("NaN"))
    with pytest.raises(ValueError, match="'abc' is not a number"):
        to_float("abc")
    noon = datetime.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    assert [to_text(v) for v in ("é", b"\x00\xff", True, 3, 0.1, decimal.Decimal("1.250000000"),
                                 decimal.Decimal("100"), datetime.date(2024, 3, 1), noon, datetime.time(8, 30))] == [
        "é".encode(), b"\x00\xff", b"true", b"3", b"0.1", b"1.25", b"100", b"2024-03-01",
        b"2024-03-01T12:00:00+00:00", b"08:30:00"]
    assert to_text(noon, civil_datetime=True) == b"2024-03-01T12:00:00"
    assert to_text("2024-03-01T12:00:00", civil_datetime=True) == b"2024-03-01T12:00:00"
    with pytest.raises(ValueError, match="a dict value has no text form"):
        to_text({"a": 1})


def test_rows_become_one_record_batch_and_bad_rows_dead_letters():
    fmt = RecordFormat(("n", "x", "s", "when"), ("int", "float", "string", "string"))
    rows = [
        {"n": 1, "x": 1.5, "s": "a", "when": datetime.date(2024, 3, 1)},
        {"n": True, "x": decimal.Decimal("2.25"), "s": b"\x00\xff",
         "when": datetime.datetime(2024, 3, 1, 12, tzinfo=UTC)},
        {"n": None, "x": None},
        {"n": "twelve", "x": "x", "s": "b", "when": None},
        {"n": "12", "x": "1e3", "s": 7, "when": datetime.time(8, 30)},
        {"n": 1 << 63, "x": 1.0, "s": b"big", "when": None},
    ]
    chunk = rows_to_chunk(rows, fmt, "bigquery:p.d.t")
    assert chunk.records_read == 6 == chunk.batch.num_rows + len(chunk.dead_letters)
    assert chunk.batch.schema == fmt.arrow_schema()
    assert chunk.batch.to_pydict() == {
        "n": [[1], [1], None, [12]],
        "x": [[1.5], [2.25], None, [1000.0]],
        "s": [[b"a"], [b"\x00\xff"], None, [b"7"]],
        "when": [[b"2024-03-01"], [b"2024-03-01T12:00:00+00:00"], None, [b"08:30:00"]],
    }
    assert [(d.source, d.line, d.reason) for d in chunk.dead_letters] == [
        ("bigquery:p.d.t", 0, "column 'n': 'twelve' is not an integer"),  # its first bad column
        ("bigquery:p.d.t", 0, f"column 'n': {1 << 63} is out of the int64 range")]
    assert json.loads(chunk.dead_letters[0].raw) == rows[3]
    assert json.loads(row_json({"b": b"hi", "d": datetime.date(2024, 3, 1), "m": decimal.Decimal("1.5")})) == \
        {"b": "aGk=", "d": "2024-03-01", "m": "1.5"}


def test_empty_and_civil_datetime_rows():
    fmt = RecordFormat(("local",), ("string",))
    assert rows_to_chunk([], fmt, "bigquery:query").batch.num_rows == 0
    chunk = rows_to_chunk([{"local": datetime.datetime(2024, 3, 1, 12, tzinfo=UTC)}], fmt, "bigquery:query",
                          civil_datetime_columns={"local"})
    assert chunk.batch.to_pydict() == {"local": [[b"2024-03-01T12:00:00"]]}


def test_reads_refuse_pipeline_options_that_would_fail_or_leak():
    fmt = RecordFormat(("x",), ("int",))
    query = BigQuerySource(P, fmt, query="SELECT 1 AS x")
    with pytest.raises(ValueError, match="needs --project"):
        _ = beam.Pipeline() | query.read()
    export = BigQuerySource(P, fmt, table=f"{P}.ds.t", method="EXPORT")
    with pytest.raises(ValueError, match="EXPORT needs --temp_location"):
        _ = beam.Pipeline(options=PipelineOptions([f"--project={P}"])) | export.read()


@pytest.mark.parametrize("table, query, spans, message", [
    (None, None, None, "got neither"),
    ("ds.t", "SELECT 1", None, "got table and query"),
    (None, "SELECT * FROM t WHERE ts >= @span_begin_timestamp", None, "needs --spans A-B"),
    (None, "SELECT 1", (1, 2), "uses none of"),
    ("ds.t", None, (1, 2), "not a table"),
])
def test_table_query_and_spans_must_agree(table, query, spans, message):
    with pytest.raises(ValueError, match=message):  # checked before any request to BigQuery
        BigQuerySource.resolve(f"bigquery:{P}", table, query, "DIRECT_READ", {}, spans)


def test_a_table_in_the_spec_and_another_table_conflict():
    with pytest.raises(ValueError, match="got a table in the spec and table"):
        BigQuerySource.resolve(f"bigquery:{P}.ds.t", "ds.u", None, "DIRECT_READ", {})
    with pytest.raises(ValueError, match="method 'SCAN'"):
        BigQuerySource.resolve(f"bigquery:{P}.ds.t", None, None, "scan", {})


# ---- against bqemulator ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(bq_emulator):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery
    return bigquery.Client(project=P, credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=bq_emulator["rest"]))


def _event(day: int, second: int) -> dict:
    ts = (DAY0 + day) * 86400 + second
    moment = datetime.datetime.fromtimestamp(ts, UTC)
    return {"id": day * 10 + EVENT_SECONDS.index(second), "ts": ts, "amount": f"{day}.50",
            "seen": moment.date().isoformat(), "occurred": moment.isoformat(), "civil": moment.replace(tzinfo=None)
            .isoformat(), "clock": moment.time().isoformat(), "flag": day % 2 == 0, "payload": "aGk="}


@pytest.fixture(scope="module")
def dataset(client, penguins_rows):
    """A dataset with the penguins, timestamped events (three per day on days DAY0..DAY0+3) and tables with
    columns the source cannot read."""
    from google.cloud import bigquery
    name = "bq_source_" + uuid.uuid4().hex[:8]
    client.create_dataset(name)
    penguins = client.create_table(bigquery.Table(f"{P}.{name}.penguins", schema=[
        SchemaField(column, kind) for column, kind in PENGUIN_SCHEMA]))
    assert client.insert_rows_json(penguins, penguin_records(penguins_rows)) == []
    events = client.create_table(bigquery.Table(f"{P}.{name}.events", schema=[
        SchemaField("id", "INT64"), SchemaField("ts", "INT64"), SchemaField("amount", "NUMERIC"),
        SchemaField("seen", "DATE"), SchemaField("occurred", "TIMESTAMP"), SchemaField("civil", "DATETIME"),
        SchemaField("clock", "TIME"), SchemaField("flag", "BOOL"), SchemaField("payload", "BYTES")]))
    assert client.insert_rows_json(events, [_event(day, s) for day in range(4) for s in EVENT_SECONDS]) == []
    client.create_table(bigquery.Table(f"{P}.{name}.nested", schema=[
        SchemaField("id", "INT64"), SchemaField("tags", "STRING", mode="REPEATED")]))
    client.create_table(bigquery.Table(f"{P}.{name}.places", schema=[SchemaField("g", "GEOGRAPHY")]))
    yield name
    client.delete_dataset(name, delete_contents=True)


def test_resolve_table_reads_its_schema_and_fingerprint(dataset):
    source = BigQuerySource.resolve(f"bigquery:{P}", f"{dataset}.penguins", None, "direct_read", {"year": "string"})
    assert dict(zip(source.fmt.columns, source.fmt.types)) == {
        "species": "string", "island": "string", "bill_length_mm": "float", "bill_depth_mm": "float",
        "flipper_length_mm": "int", "body_mass_g": "int", "sex": "string", "year": "string"}
    [entry] = source.describe()
    assert {k: entry[k] for k in ("bigquery", "project", "query", "method", "spans", "num_rows")} == {
        "bigquery": f"{P}.{dataset}.penguins", "project": P, "query": None, "method": "DIRECT_READ", "spans": None,
        "num_rows": 344}
    assert entry["etag"] and datetime.datetime.fromisoformat(entry["modified"])
    same = BigQuerySource.resolve(f"bigquery:{P}:{dataset}.penguins", None, None, "DIRECT_READ", {})
    assert same.table == source.table and same.fmt.types[-1] == "int"


def test_resolve_errors_name_the_table_the_query_or_the_column(dataset):
    def resolve(spec, table=None, query=None, column_types=None):
        return BigQuerySource.resolve(spec, table, query, "DIRECT_READ", column_types or {})

    with pytest.raises(ValueError, match=f"no such table {P}.{dataset}.missing"):
        resolve(f"bigquery:{P}", f"{dataset}.missing")
    with pytest.raises(ValueError, match=f"no such table {P}.no_such_dataset.t"):
        resolve(f"bigquery:{P}.no_such_dataset.t")
    with pytest.raises(ValueError, match=f"bigquery:{P}.{dataset}.nested: column 'tags' is REPEATED"):
        resolve(f"bigquery:{P}", f"{dataset}.nested")
    with pytest.raises(ValueError, match="column 'g' has BigQuery type GEOGRAPHY"):
        resolve(f"bigquery:{P}", f"{dataset}.places")
    assert resolve(f"bigquery:{P}", f"{dataset}.places", column_types={"g": "string"}).fmt.types == ("string",)
    with pytest.raises(ValueError, match="column 'a' is REPEATED INTEGER"):  # from the query's dry run
        resolve(f"bigquery:{P}", query="SELECT [1, 2] AS a")
    with pytest.raises(ValueError, match="BigQuery rejects the query"):
        resolve(f"bigquery:{P}", query=f"SELECT nope FROM `{P}.{dataset}.missing`")


def _rows(chunk) -> list[tuple]:
    """A chunk's rows as tuples of plain values (None where missing)."""
    columns = [[None if v is None else v[0] for v in column] for column in chunk.batch.to_pydict().values()]
    return list(zip(*columns))


def _counts(chunk) -> tuple[int, int, int, int]:
    return 1, chunk.records_read, chunk.batch.num_rows, len(chunk.dead_letters)


def _add(counts) -> tuple:
    return tuple(map(sum, zip(*counts))) or (0, 0, 0, 0)


def _penguin_values(row: tuple) -> tuple:
    species, island, bill_length, _, _, body_mass, sex, year = row
    return (species, island, None if bill_length is None else round(bill_length, 1), body_mass, sex, year)


def test_read_table_through_the_pipeline(dataset, penguins_rows):
    source = BigQuerySource.resolve(f"bigquery:{P}", f"{dataset}.penguins", None, "DIRECT_READ", {},
                                    batch_rows=100)
    expected = [(r["species"].encode(), r["island"].encode(), r["bill_length_mm"], r["body_mass_g"],
                 None if r["sex"] is None else r["sex"].encode(), r["year"]) for r in penguin_records(penguins_rows)]
    assert len(expected) == 344
    with beam.Pipeline() as p:  # a table needs no pipeline options
        chunks = p | source.read()
        assert_that(chunks | "Rows" >> beam.FlatMap(_rows) | beam.Map(_penguin_values), equal_to(expected),
                    label="Values")
        assert_that(chunks | "Count" >> beam.Map(_counts) | beam.CombineGlobally(_add),
                    equal_to([(4, 344, 344, 0)]), label="Counts")  # 100 + 100 + 100 + 44 rows


def test_query_with_span_placeholders_reads_only_the_chosen_days(client, dataset):
    query = (f"SELECT id, ts, amount, seen, occurred, civil, clock, flag, payload FROM `{P}.{dataset}.events` "
             f"WHERE ts >= @span_begin_timestamp AND ts < @span_end_timestamp")
    source = BigQuerySource.resolve(f"bigquery:{P}", None, query, "DIRECT_READ", {}, spans=(DAY0 + 1, DAY0 + 2))
    assert source.fmt.types == ("int", "int", "float", "string", "string", "string", "string", "int", "string")
    [entry] = source.describe()
    assert entry["bigquery"] is None and entry["spans"] == [DAY0 + 1, DAY0 + 2] and entry["num_rows"] is None
    assert f"ts >= {(DAY0 + 1) * 86400} AND ts < {(DAY0 + 3) * 86400}" in entry["query"]
    expected = []
    for day in (1, 2):  # days 0 and 3 are out, including the last second before and the first second after
        for second in EVENT_SECONDS:
            event = _event(day, second)
            expected.append((event["id"], event["ts"], day + 0.5, event["seen"].encode(),
                             event["occurred"].encode(), event["civil"].encode(), event["clock"].encode(),
                             int(event["flag"]), b"hi"))
    with beam.Pipeline(options=PipelineOptions([f"--project={P}"])) as p:
        chunks = p | source.read()
        assert_that(chunks | "Rows" >> beam.FlatMap(_rows), equal_to(expected), label="Values")
        assert_that(chunks | "DeadLetters" >> beam.FlatMap(lambda chunk: chunk.dead_letters), equal_to([]),
                    label="NoDeadLetters")
    leftovers = [d.dataset_id for d in client.list_datasets() if d.dataset_id.startswith("beam_temp_dataset_")]
    assert leftovers == []  # Beam deleted the dataset it ran the query into


def test_an_override_that_values_do_not_fit_gives_dead_letters(dataset):
    # `seen` is a DATE: read as int, no value converts; every row is read and dead-lettered, none is lost.
    source = BigQuerySource.resolve(f"bigquery:{P}", None, f"SELECT id, seen FROM `{P}.{dataset}.events`",
                                    "DIRECT_READ", {"seen": "int"})
    with beam.Pipeline(options=PipelineOptions([f"--project={P}"])) as p:
        chunks = p | source.read()
        assert_that(chunks | "Count" >> beam.Map(_counts) | beam.CombineGlobally(_add)
                    | beam.Map(lambda counts: counts[1:]), equal_to([(12, 0, 12)]), label="Counts")
        assert_that(chunks | beam.FlatMap(lambda chunk: [(d.source, d.line, d.reason.split(":")[0])
                                                         for d in chunk.dead_letters])
                    | beam.combiners.Count.PerElement(),
                    equal_to([(("bigquery:query", 0, "column 'seen'"), 12)]), label="Reasons")
