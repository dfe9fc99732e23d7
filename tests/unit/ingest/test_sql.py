"""The SQL source against real PostgreSQL and MariaDB servers started by the tests (tests/databases.py)."""
import datetime
import decimal
import json
import os
import subprocess
import sys
import time

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_ml.config.train import PipelineConfig
from beam_ml.core.errors import ConfigError
from beam_ml.core.records import RecordFormat
from beam_ml.ingest.read import ReadSplits
from beam_ml.ingest.resolve import resolve_source
from beam_ml.ingest.split import HashSplit
from beam_ml.ingest.sql import Credentials, Dsn, SqlSource, _inner_edges, quote_identifier, rows_to_chunk
from tests.support.databases import PENGUIN_DB_COLUMNS
from tests.support.paths import PENGUINS_CONFIG, ROOT

ALL_ROWS = HashSplit((("all", 1),))


def test_dsn_rejects_a_password_and_masks_the_user():
    with pytest.raises(ValueError, match="must not hold a password"):
        Dsn.parse("postgresql://beam:secret@db:5432/ml")
    dsn = Dsn.parse("mysql://beam@db/ml")
    assert (dsn.port, dsn.masked()) == (3306, "mysql://beam:***@db:3306/ml")
    with pytest.raises(ValueError, match="user@host"):
        Dsn.parse("postgresql://beam@db:5432/")


@pytest.mark.parametrize("name", ['pen"guins', "penguins; DROP TABLE x", "a b", "x.y.z.w", "`t`", "1abc"])
def test_identifiers_with_quotes_or_semicolons_are_rejected_before_connecting(name):
    import sqlalchemy
    dialect = sqlalchemy.create_engine("postgresql+psycopg2://").dialect
    with pytest.raises(ValueError, match="plain SQL identifier"):
        quote_identifier(name, dialect)
    # Port 9 (discard) has no database: a rejection here proves nothing was sent anywhere.
    with pytest.raises(ValueError, match="plain SQL identifier"):
        SqlSource.resolve("postgresql://beam@127.0.0.1:9/ml", table=name, query=None, partition_column=None,
                          partitions=1, credentials=Credentials(), column_types={})
    with pytest.raises(ValueError, match="plain SQL identifier"):
        SqlSource.resolve("postgresql://beam@127.0.0.1:9/ml", table="t", query=None, partition_column=name,
                          partitions=2, credentials=Credentials(), column_types={})
    assert quote_identifier("public.penguins", dialect) == "public.penguins"


def test_a_query_must_be_one_statement():
    with pytest.raises(ValueError, match="single statement"):
        SqlSource.resolve("postgresql://beam@127.0.0.1:9/ml", table=None, query="SELECT 1; DROP TABLE t",
                          partition_column=None, partitions=1, credentials=Credentials(), column_types={})


def test_rows_convert_column_by_column_and_bad_values_become_dead_letters():
    fmt = RecordFormat(("n", "x", "s"), ("int", "float", "string"))
    rows = [(1, decimal.Decimal("1.5"), datetime.date(2024, 1, 2)), (True, None, "é"), (2.5, 3.0, None),
            (None, 2, b"raw")]
    chunk = rows_to_chunk(rows, fmt, "db", 10)
    assert chunk.records_read == 4 and chunk.batch.num_rows == 3
    assert chunk.batch.to_pydict() == {"n": [[1], [1], None], "x": [[1.5], None, [2.0]],
                                       "s": [[b"2024-01-02"], ["é".encode()], [b"raw"]]}
    [dead] = chunk.dead_letters
    assert (dead.line, dead.source) == (13, "db") and "column 'n'" in dead.reason and "2.5" in dead.reason


def _penguin_types() -> dict:
    return PipelineConfig.load(PENGUINS_CONFIG, {}).column_types


@pytest.fixture(params=["postgresql", "mysql"])
def penguin_db(request, penguin_databases, monkeypatch):
    """Each engine's server with the penguins loaded; its password in BEAM_ML_DB_PASSWORD."""
    server = penguin_databases[request.param]
    monkeypatch.setenv("BEAM_ML_DB_PASSWORD", server.password)
    return server


def _check_rows(source, check, read: int = 344) -> None:
    """Reads the source with no dead letters and `read` records, and applies `check` to the list of all rows."""
    def matcher(rows):
        check(rows)
    with TestPipeline() as p:
        out = p | ReadSplits(source, ALL_ROWS)
        rows = out.splits["all"] | beam.FlatMap(lambda batch: batch.to_pylist()) | beam.combiners.ToList()
        assert_that(rows, matcher, label="Rows")
        assert_that(out.dead_letter, equal_to([]), label="NoDeadLetters")
        assert_that(out.records_read | beam.CombineGlobally(sum), equal_to([read]), label="Read")


def test_a_table_is_read_in_partitions_with_every_row_once(penguin_db):
    source = SqlSource.resolve(penguin_db.url(driver=False), table="penguins", query=None, partition_column="id",
                               partitions=4, credentials=Credentials("BEAM_ML_DB_PASSWORD"),
                               column_types={}, fetch_rows=50)
    assert len(source.chunks()) == 4
    assert dict(zip(source.fmt.columns, source.fmt.types))["year"] == "int"
    def every_id_once(rows):
        assert sorted(r["id"][0] for r in rows[0]) == list(range(1, 345))
    _check_rows(source, every_id_once)
    [described] = source.describe()
    assert described["database"] == f"{penguin_db.engine}://beam:***@127.0.0.1:{penguin_db.port}/ml"
    assert described["partition_bounds"] == [1, 344] and penguin_db.password not in str(described)


def test_a_query_partitioned_on_a_column_with_nulls_reads_every_row(penguin_db):
    # body_mass_g has NULLs: the first range also takes them.
    source = SqlSource.resolve(penguin_db.url(driver=False), table=None,
                               query=f"SELECT {PENGUIN_DB_COLUMNS} FROM penguins", partition_column="body_mass_g",
                               partitions=3, credentials=Credentials("BEAM_ML_DB_PASSWORD"),
                               column_types=_penguin_types())
    def two_without_mass(rows):
        assert len(rows[0]) == 344 and sum(1 for r in rows[0] if not r["body_mass_g"]) == 2
    _check_rows(source, two_without_mass)


def test_span_placeholders_in_a_query_are_bound_parameters(penguin_db):
    # Spans are UTC days since 1970-01-01: the range of 2008's days selects year 2008.
    first = (datetime.date(2008, 1, 1) - datetime.date(1970, 1, 1)).days
    last = (datetime.date(2008, 12, 31) - datetime.date(1970, 1, 1)).days
    query = (f"SELECT {PENGUIN_DB_COLUMNS} FROM penguins WHERE CAST(year AS CHAR(4)) = "
             f"SUBSTRING(@span_yyyymmdd_utc, 1, 4) AND @span_end_timestamp - @span_begin_timestamp = {366 * 86400}")
    config = PipelineConfig.load(PENGUINS_CONFIG, {"input": penguin_db.url(driver=False), "input_query": query,
                                                   "spans": f"{first}-{last}"})
    source = resolve_source(config, _penguin_types()).source
    assert source.describe()[0]["span_params"] == {"span_begin_timestamp": first * 86400,
                                                   "span_end_timestamp": (last + 1) * 86400,
                                                   "span_yyyymmdd_utc": "20080101"}
    def only_2008(rows):
        assert len(rows[0]) == 114 and {r["year"][0] for r in rows[0]} == {2008}
    _check_rows(source, only_2008, read=114)
    with pytest.raises(ConfigError, match="--spans"):
        resolve_source(PipelineConfig.load(PENGUINS_CONFIG, {"input": penguin_db.url(driver=False),
                                                             "input_query": query}), {})


def test_a_wrong_password_is_a_clear_error_without_the_password(penguin_db, monkeypatch):
    monkeypatch.setenv("BEAM_ML_DB_PASSWORD", "hunter2-wrong")
    config = PipelineConfig.load(PENGUINS_CONFIG, {"input": penguin_db.url(driver=False), "input_table": "penguins"})
    with pytest.raises(ConfigError) as error:
        resolve_source(config, {})
    message = str(error.value)
    assert message.startswith("--input_password_env: ") and "hunter2-wrong" not in message and \
        penguin_db.password not in message
    assert ("password authentication failed" in message) if penguin_db.engine == "postgresql" \
        else ("Access denied" in message)


def test_a_missing_password_is_named_at_launch(penguin_db, monkeypatch, tmp_path):
    monkeypatch.delenv("BEAM_ML_DB_PASSWORD")
    config = PipelineConfig.load(PENGUINS_CONFIG, {"input": penguin_db.url(driver=False), "input_table": "penguins"})
    with pytest.raises(ConfigError, match=r"^--input_password_env: .*\$BEAM_ML_DB_PASSWORD is not set"):
        resolve_source(config, {})
    config = PipelineConfig.load(PENGUINS_CONFIG, {"input": penguin_db.url(driver=False), "input_table": "penguins",
                                                   "input_password_file": str(tmp_path / "absent")})
    with pytest.raises(ConfigError, match=r"^--input_password_file: cannot read the password file"):
        resolve_source(config, {})
    config = PipelineConfig.load(PENGUINS_CONFIG, {"input": penguin_db.url(driver=False), "input_table": "penguins",
                                                   "input_password_file": penguin_db.password_file})
    assert resolve_source(config, {}).source.fmt.columns[0] == "id"


def test_an_unreachable_database_fails_fast_naming_host_and_port():
    config = PipelineConfig.load(PENGUINS_CONFIG, {"input": "postgresql://beam@127.0.0.1:9/ml",
                                                   "input_table": "penguins"})
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"host 127\.0\.0\.1, port 9"):
        resolve_source(config, {})
    assert time.monotonic() - started < 15


def test_train_pipeline_job_runs_from_a_database(penguin_db, tmp_path, launched_penguins):
    """The whole job from `--input postgresql://...` (the MySQL one up to the plan): the password only in the
    environment, never in the output or the run record; the same splits as the CSV run."""
    full_run = penguin_db.engine == "postgresql"
    args = ["--config", PENGUINS_CONFIG, "--input", penguin_db.url(driver=False), "--input_query",
            f"SELECT {PENGUIN_DB_COLUMNS} FROM penguins", "--input_partition_column", "year", "--input_partitions", "2",
            "--output_dir", str(tmp_path / "runs"), "--serving_dir", str(tmp_path / "serving"),
            "--run_id", "from-db", *([] if full_run else ["--validate_only"])]
    completed = subprocess.run([sys.executable, "-m", "jobs.train_pipeline", *args], cwd=ROOT, capture_output=True,
                               text=True, env={**os.environ, "BEAM_ML_DB_PASSWORD": penguin_db.password},
                               timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert penguin_db.password not in completed.stdout + completed.stderr
    if full_run:
        with open(tmp_path / "runs" / "from-db" / "run_manifest.json") as f:
            text = f.read()
        manifest = json.loads(text)
        assert penguin_db.password not in text and manifest["status"] == "succeeded"
        assert manifest["counts"] == launched_penguins[1]["counts"]
        assert manifest["inputs"][0]["database"].startswith("postgresql://beam:***@127.0.0.1:")


def test_partition_edges_cut_inside_the_range_or_not_at_all():
    assert _inner_edges(1, 344, 4) == [86, 172, 258]
    assert _inner_edges(5, 5, 4) == [] and _inner_edges(None, None, 4) == [] and _inner_edges(1, 9, 1) == []
    assert _inner_edges(0.0, float("inf"), 4) == [] and _inner_edges(float("nan"), 1.0, 4) == []
    assert _inner_edges(decimal.Decimal("0.1"), decimal.Decimal("0.4"), 3) == [decimal.Decimal("0.2"),
                                                                            decimal.Decimal("0.3")]
    day = datetime.date(2024, 1, 1)
    assert _inner_edges(day, day + datetime.timedelta(days=4), 2) == [day + datetime.timedelta(days=2)]
    with pytest.raises(ValueError, match="numeric, a date or a timestamp"):
        _inner_edges("a", "z", 2)


def test_values_outside_int64_and_float32_are_dead_letters():
    fmt = RecordFormat(("n", "x"), ("int", "float"))
    rows = [(2 ** 64, 1.0), (1, decimal.Decimal("1e300")), (float("inf"), 2.0), (3, 3.5)]
    chunk = rows_to_chunk(rows, fmt, "db", 0)
    assert chunk.batch.to_pydict() == {"n": [[3]], "x": [[3.5]]}
    assert [d.line for d in chunk.dead_letters] == [1, 2, 3]


@pytest.mark.parametrize("partitions", [2, 3, 7])
def test_float_and_decimal_keys_partition_every_row_once(penguin_db, partitions):
    """Single-precision and NUMERIC keys whose MIN/MAX and cut points do not round-trip exactly through a double:
    the outer ranges are open-ended, so no row falls between partitions."""
    import sqlalchemy
    real = "REAL" if penguin_db.engine == "postgresql" else "FLOAT"
    engine = penguin_db.create_engine()
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("DROP TABLE IF EXISTS edge_keys"))
        connection.execute(sqlalchemy.text(f"CREATE TABLE edge_keys (id INT, r {real}, d DECIMAL(12, 4))"))
        values = [{"id": i, "r": 0.1 * i + 0.033, "d": decimal.Decimal(i) / 7} for i in range(1, 41)]
        values.append({"id": 41, "r": None, "d": None})
        connection.execute(sqlalchemy.text("INSERT INTO edge_keys VALUES (:id, :r, :d)"), values)
    engine.dispose()
    for column in ("r", "d"):
        source = SqlSource.resolve(penguin_db.url(driver=False), table="edge_keys", query=None,
                                   partition_column=column, partitions=partitions,
                                   credentials=Credentials("BEAM_ML_DB_PASSWORD"), column_types={})
        assert len(source.chunks()) == partitions
        def every_id_once(rows):
            assert sorted(r["id"][0] for r in rows[0]) == list(range(1, 42))
        _check_rows(source, every_id_once, read=41)


def test_a_query_with_colons_in_literals_and_a_trailing_comment(penguin_db):
    query = (f"SELECT {PENGUIN_DB_COLUMNS} FROM penguins WHERE island <> 'Nowhere :island' "
             f"AND species <> '10:30' -- every penguin")
    source = SqlSource.resolve(penguin_db.url(driver=False), table=None, query=query, partition_column="body_mass_g",
                               partitions=2, credentials=Credentials("BEAM_ML_DB_PASSWORD"),
                               column_types=_penguin_types())
    _check_rows(source, lambda rows: None)
