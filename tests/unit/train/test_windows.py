"""Windows of each key's rows: the batch side of sequence models (the streaming side is tests/test_streaming.py)."""
import math

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_ml.config.train import PipelineConfig
from beam_ml.core.errors import ConfigError
from beam_ml.core.records import RecordFormat, to_record_batch
from beam_ml.core.windowing import Reading, SensorWindow, WindowSpec, windows_record_batch
from beam_ml.train.plan import plan_run
from beam_ml.train.windows import WindowRows, batch_readings
from tests.support.paths import ROOT

FMT = RecordFormat(("t", "key", "x", "label"), ("int", "string", "float", "int"))
SPEC = WindowSpec(key="key", time_key="t", length=3, stride=1, max_gap=100)


def rows(*records):
    table = pa.table({name: [r[i] for r in records] for i, name in enumerate(FMT.columns)})
    return to_record_batch(table, FMT)


def test_batch_readings_keep_complete_rows_and_count_the_rest():
    batch = rows((10, "a", 1.0, 0), (20, "b", None, 0), (30, None, 2.0, 1), (40, "a", 3.0, 1))
    readings, incomplete = batch_readings(batch, SPEC, SPEC.value_columns(FMT))
    assert readings == [Reading("a", 10.0, (1.0, 0)), Reading("a", 40.0, (3.0, 1))]
    assert incomplete == 2


def test_window_records_keep_the_format_with_a_list_per_column():
    windows = [SensorWindow("a", (1.0, 2.0, 3.0), ((0.5, 0), (1.5, 1), (2.5, 0))),
               SensorWindow("b", (4.0, 5.0, 6.0), ((3.5, 0), (4.5, 0), (5.5, 0)))]
    batch = windows_record_batch(windows, FMT, SPEC)
    assert batch.schema.names == list(FMT.columns)
    assert batch.to_pydict() == {"t": [[1, 2, 3], [4, 5, 6]], "key": [[b"a"], [b"b"]],
                                 "x": [[0.5, 1.5, 2.5], [3.5, 4.5, 5.5]], "label": [[0, 1, 0], [0, 0, 0]]}
    # Serving windows carry no label: the column is left out.
    unlabelled = [SensorWindow("a", w.timestamps, tuple(v[:1] for v in w.values)) for w in windows[:1]]
    assert windows_record_batch(unlabelled, FMT, SPEC).schema.names == ["t", "key", "x"]


def window_tuples(batch):
    return [(r["key"][0], tuple(r["t"]), tuple(r["x"]), max(r["label"])) for r in batch.to_pylist()]


def test_window_rows_orders_each_key_and_restarts_after_gaps_and_missing_values():
    # key a: rows out of order across batches, a duplicate, a gap (40 -> 200); key b: too few rows for a window.
    batches = [rows((30, "a", 3.0, 0), (10, "a", 1.0, 0), (10, "b", 9.0, 0)),
               rows((20, "a", 2.0, 1), (20, "a", 2.0, 1), (40, "a", 4.0, 0), (200, "a", 5.0, 0), (210, "a", 6.0, 0),
                    (220, "a", 7.0, 0), (20, "b", 9.0, 0))]
    with TestPipeline() as p:
        windows = p | beam.Create(batches) | WindowRows(SPEC, FMT) | beam.FlatMap(window_tuples)
        assert_that(windows, equal_to([
            (b"a", (10, 20, 30), (1.0, 2.0, 3.0), 1), (b"a", (20, 30, 40), (2.0, 3.0, 4.0), 1),
            (b"a", (200, 210, 220), (5.0, 6.0, 7.0), 0)]))


def telemetry_config(**overrides):
    return PipelineConfig.load(f"{ROOT}/examples/telemetry/config.yaml",
                               {"output_dir": "/tmp/unused", "serving_dir": "/tmp/unused", **overrides})


@pytest.mark.parametrize("overrides, option", [
    ({"window_key": "no_such_column"}, "window_key"),
    ({"window_time_key": "sensor_id"}, "window_time_key"),  # a string column cannot order rows
    ({"window_length": "12"}, "window_length"),  # the module's model takes 24 rows
])
def test_window_options_are_checked_before_any_work(overrides, option, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(ConfigError) as e:
        plan_run(telemetry_config(**overrides))
    assert e.value.option == option


def test_window_options_go_together():
    with pytest.raises(ConfigError, match="--window_length: is required"):
        PipelineConfig.load(None, {"input": "x.csv", "label_key": "y", "module": "transforms.taxi",
                                   "output_dir": "o", "serving_dir": "s", "window_key": "k",
                                   "window_time_key": "t"})
    assert math.isinf(WindowSpec("k", "t", 2).max_gap)
