import os

import apache_beam as beam
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
import tensorflow_transform as tft
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_ml.ingest.files.csv_format import infer_csv_format, parse_csv_chunk
from beam_ml.train.evaluate import AddRawRecords, build_eval_config, threshold_failures
from beam_ml.train.transform import TransformSplits
from transforms import penguins


def _count_records(files):
    return sum(1 for f in files for _ in tf.data.TFRecordDataset(f))


def test_transform_analyzes_train_only_and_writes_tfx_layout(tmp_path, penguins_rows):
    header, body = penguins_rows[0].encode(), ("\n".join(penguins_rows[1:]) + "\n").encode()
    fmt = infer_csv_format(header, body, {"year": "int"})
    batch = parse_csv_chunk(body, fmt, "p.csv", lambda: 2).batch
    train, evaluation = batch.slice(0, 200), batch.slice(200)
    out_dir = str(tmp_path / "transform")
    with TestPipeline() as p:
        out = ({"train": p | "Train" >> beam.Create([train]), "eval": p | "Eval" >> beam.Create([evaluation])}
               | TransformSplits(penguins.preprocessing_fn, fmt, out_dir, str(tmp_path / "tmp")))
        assert_that(out.files["eval"] | beam.combiners.Count.Globally(), equal_to([1]), label="OneEvalFile")
    output = tft.TFTransformOutput(out_dir)
    assert set(output.transformed_feature_spec()) == {*penguins.NUMERIC, *penguins.CATEGORICAL, "species"}
    assert sorted(output.raw_feature_spec()) == sorted(fmt.columns)
    assert _count_records(tf.io.gfile.glob(os.path.join(out_dir, "transformed_examples/Split-eval/*"))) == 144
    # analyzed on train only: the z-score mean comes from the first 200 rows
    train_mass = [v[0] for v in train.column("body_mass_g").to_pylist() if v]
    examples = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(
        tf.io.gfile.glob(os.path.join(out_dir, "transformed_examples/Split-train/*")))]
    scaled = [e.features.feature["body_mass_g"].float_list.value[0] for e in examples]
    assert abs(sum(scaled) / len(scaled)) < 0.05 and len(train_mass) == 199


def test_eval_config_thresholds_on_the_overall_slice_and_change_only_with_a_baseline():
    args = ("species", ["ExampleCount", "SparseCategoricalAccuracy"], [[], ["island"]],
            {"SparseCategoricalAccuracy": {"lower": 0.9}},
            {"SparseCategoricalAccuracy": {"direction": "higher", "absolute": -0.02}})
    first = build_eval_config(*args, with_baseline=False)
    assert [m.name for m in first.model_specs] == ["candidate"]
    threshold = first.metrics_specs[0].metrics[1].per_slice_thresholds[0]
    assert threshold.slicing_specs == [tfma.SlicingSpec()]
    assert threshold.threshold.value_threshold.lower_bound.value == 0.9
    assert not threshold.threshold.HasField("change_threshold")
    second = build_eval_config(*args, with_baseline=True)
    assert [m.is_baseline for m in second.model_specs] == [False, True]
    change = second.metrics_specs[0].metrics[1].per_slice_thresholds[0].threshold.change_threshold
    assert change.direction == tfma.MetricDirection.HIGHER_IS_BETTER and change.absolute.value == -0.02
    with pytest.raises(ValueError, match="AUC"):
        build_eval_config("species", ["ExampleCount"], [[]], {"AUC": {"lower": 0.5}}, {}, with_baseline=False)


def test_a_model_judged_without_thresholds_is_refused_with_the_reason(tmp_path):
    from tensorflow_model_analysis.proto import validation_result_pb2

    def failures(result) -> list[str]:
        with tf.io.TFRecordWriter(str(tmp_path / "validations.tfrecord")) as writer:
            writer.write(result.SerializeToString())
        return threshold_failures(str(tmp_path))

    # TFMA's verdict when no metric has a bound: not ok, no failure listed (a first model with only change
    # thresholds has no baseline to compare with, so it gets the same verdict)
    unjudged = failures(validation_result_pb2.ValidationResult(validation_ok=False, missing_thresholds=True))
    assert unjudged == ["no thresholds to validate against: eval_thresholds is empty (and a first model has no "
                        "baseline for eval_change_thresholds)"]
    assert failures(validation_result_pb2.ValidationResult(validation_ok=True)) == []


def test_eval_batches_are_cut_to_bounded_slices_with_each_row_serialized_once():
    import pyarrow as pa

    from beam_ml.core.records import to_list_array
    values = list(range(2500))
    batch = pa.RecordBatch.from_arrays([to_list_array(pa.array(values, pa.int64()))], ["n"]).slice(3)
    add = AddRawRecords(max_rows=1000)
    add.setup()
    parts = list(add.process(batch))
    assert [p.num_rows for p in parts] == [1000, 1000, 497]
    decoded = [tf.train.Example.FromString(raw[0]).features.feature["n"].int64_list.value[0]
               for p in parts for raw in p.column(tfma.ARROW_INPUT_COLUMN).to_pylist()]
    assert decoded == values[3:] and [p.column("n").to_pylist()[0][0] for p in parts] == [3, 1003, 2003]
