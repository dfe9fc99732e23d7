"""Batched metrics give what TFMA's own per-example evaluator gives: the same slices, values, diffs and validations."""
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
import tensorflow_model_analysis as tfma
import yaml
from google.protobuf import json_format
from tensorflow_model_analysis.api import model_eval_lib
from tensorflow_model_analysis.api import types as tfma_types
from tensorflow_model_analysis.metrics import calibration_histogram, metric_types
from tensorflow_model_analysis.slicer import slicer_lib
from tfx_bsl.tfxio import tensor_adapter

from beam_ml.ingest.files.csv_format import infer_csv_format, parse_csv_chunk
from beam_ml.train import batched_metrics
from beam_ml.train.evaluate import BASELINE, CANDIDATE, AddRawRecords, build_eval_config, evaluation_stages
from beam_ml.train.transform import tensor_adapter_config
from tests.support.jobs import job_args, run_job
from tests.support.paths import PENGUINS_CONFIG, PENGUINS_CSV, ROOT, TAXI_CONFIG


def _var_len(rows: list) -> tfma_types.VarLenTensorValue:
    indices = [(r, i) for r, values in enumerate(rows) for i in range(len(values))]
    return tfma_types.VarLenTensorValue(values=np.array([v for values in rows for v in values]),
                                        indices=np.array(indices, np.int64).reshape(-1, 2),
                                        dense_shape=np.array([len(rows), max(map(len, rows))]))


def test_slices_are_the_ones_tfma_finds_row_by_row():
    company = [[b"x"], [], [b"x", b"y"], [b"y"], [b"x"], [b"\xc3\xa9"]]
    hour = [[1], [3], [2], [1], [1], []]
    fare = np.array([1.5, 2.5, 1.5, 1.5, 2.5, 1.5], np.float32)  # dense: one value per row
    features = {"company": _var_len(company), "hour": _var_len(hour)}
    specs = [tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["company"]),
             tfma.SlicingSpec(feature_keys=["hour", "company"]), tfma.SlicingSpec(feature_keys=["fare"]),
             tfma.SlicingSpec(feature_keys=["absent"])]
    got = batched_metrics.slice_rows(features, [{"fare": fare}], specs, rows=6)

    expected = {}
    for row in range(6):
        row_features = {"company": np.array(company[row], object), "hour": np.array(hour[row], np.int64)}
        keys = slicer_lib.get_slices_for_features_dicts(
            [{"fare": fare[row:row + 1]}], row_features, [slicer_lib.SingleSliceSpec(spec=s) for s in specs])
        for key in set(keys):
            expected.setdefault(key, []).append(row)
    assert {k: v.tolist() for k, v in got.items()} == expected
    assert expected[(("company", "x"), ("hour", 1))] == [0, 4] and expected[(("company", "é"),)] == [5]


def test_histogram_buckets_match_tfma_at_the_edges():
    computation = calibration_histogram.calibration_histogram(num_buckets=10, model_name="m")[0]
    combiner = computation.combiner
    labels = np.array([0, 1, 1, 0, 1, 0, 1, 0.25])
    predictions = np.array([0.0, 1e-9, 0.1, 0.35, 0.99999, 1.0, -0.2, 1.7])
    accumulator = combiner.create_accumulator()
    for label, prediction in zip(labels, predictions):
        accumulator = combiner.add_input(accumulator, metric_types.StandardMetricInputs(
            labels={"m": np.array([label])}, predictions={"m": np.array([prediction])}))
    expected = combiner.extract_output(accumulator)

    batched = batched_metrics._CalibrationHistogram(combiner, "m")
    halves = [batched.add(labels[s], predictions[s], np.ones(4)) for s in (slice(0, 4), slice(4, 8))]
    merged = batched.combine(batched.merge(batched.create(), halves[0]), batched.merge(batched.create(), halves[1]))
    assert batched.output(merged) == expected
    with pytest.raises(ValueError, match="NaN predictions"):
        batched.add(np.array([1.0]), np.array([np.nan]), np.ones(1))
    with pytest.raises(ValueError, match="within"):
        batched.add(np.array([2.0]), np.array([0.5]), np.ones(1))


def _eval_config(model_dir: str, *args, with_baseline: bool, fairness_features=()):
    config = build_eval_config(*args, with_baseline=with_baseline, fairness_features=fairness_features)
    names = [CANDIDATE, BASELINE] if with_baseline else [CANDIDATE]
    models = [tfma.default_eval_shared_model(eval_saved_model_path=model_dir, eval_config=config, model_name=name)
              for name in names]
    return config, models if with_baseline else models[0]


def test_configs_batched_metrics_cannot_compute_go_to_tfma():
    supported = build_eval_config("tips", ["ExampleCount", "AUC", "BinaryAccuracy", "MeanPrediction", "Precision"],
                                  [[], ["payment_type"]], {"AUC": {"lower": 0.5}}, {}, with_baseline=False)
    assert batched_metrics.unsupported_reason(model_eval_lib._update_eval_config_with_defaults(supported, None)) is None
    keras = build_eval_config("species", ["SparseCategoricalAccuracy"], [[]], {}, {}, with_baseline=False)
    assert batched_metrics.unsupported_reason(model_eval_lib._update_eval_config_with_defaults(keras, None)) is None
    plot = build_eval_config("species", ["MultiClassConfusionMatrixPlot"], [[]], {}, {}, with_baseline=False)
    assert batched_metrics.unsupported_reason(model_eval_lib._update_eval_config_with_defaults(plot, None)) is None
    pearson = build_eval_config("tips", ["SquaredPearsonCorrelation"], [[]], {}, {}, with_baseline=False)
    assert "metric computed by" in batched_metrics.unsupported_reason(
        model_eval_lib._update_eval_config_with_defaults(pearson, None))
    small_slices = build_eval_config("tips", ["AUC"], [[]], {}, {}, with_baseline=False)
    small_slices.options.min_slice_size.value = 10
    assert batched_metrics.unsupported_reason(small_slices) == "min_slice_size"


def _rows(csv_path: str, config_path: str, count: int) -> tuple[pa.RecordBatch, object]:
    lines = open(csv_path, "rb").read().splitlines()
    body = b"\n".join(lines[1:count + 1]) + b"\n"
    fmt = infer_csv_format(lines[0], body, yaml.safe_load(open(config_path))["column_types"])
    return parse_csv_chunk(body, fmt, os.path.basename(csv_path), lambda: 2).batch, fmt


def _evaluate(batch, fmt, config, models, output_path: str, batched: bool) -> tuple[dict, object]:
    adapter = tensor_adapter_config(fmt)
    tfxio_config = tensor_adapter.TensorAdapterConfig(
        adapter.arrow_schema.append(pa.field(tfma.ARROW_INPUT_COLUMN, pa.large_list(pa.large_binary()))),
        adapter.tensor_representations)
    extractors, evaluators = evaluation_stages(config, models, tfxio_config, batched=batched)
    assert (evaluators is not None) == batched
    with beam.Pipeline() as p:
        _ = (p | beam.Create([batch]) | beam.ParDo(AddRawRecords(max_rows=700))
             | tfma.ExtractEvaluateAndWriteResults(eval_shared_model=models, eval_config=config,
                                                   output_path=output_path, tensor_adapter_config=tfxio_config,
                                                   extractors=extractors, evaluators=evaluators))
    values = {(str(m.slice_key), str(item.key)): item.value
              for m in tfma.load_metrics(output_path) for item in m.metric_keys_and_values}
    values.update({(str(p.slice_key), "plot " + str(item.key)): item.value
                   for p in tfma.load_plots(output_path) for item in p.plot_keys_and_values})
    return values, tfma.load_validation_result(output_path)


def _assert_close(left, right, where: str) -> None:
    if isinstance(right, dict):
        assert isinstance(left, dict) and set(left) == set(right), where
        for k in right:
            _assert_close(left[k], right[k], f"{where}.{k}")
    elif isinstance(right, list):
        assert isinstance(left, list) and len(left) == len(right), where
        for i, (x, y) in enumerate(zip(left, right)):
            _assert_close(x, y, f"{where}[{i}]")
    elif isinstance(right, float) and isinstance(left, (int, float)):
        np.testing.assert_allclose(left, right, rtol=1e-9, atol=1e-12, err_msg=where)
    else:
        assert left == right, where


def _assert_same_results(tmp_path, batch, fmt, config, models):
    batched, batched_validation = _evaluate(batch, fmt, config, models, str(tmp_path / "batched"), batched=True)
    reference, reference_validation = _evaluate(batch, fmt, config, models, str(tmp_path / "tfma"), batched=False)
    assert set(batched) == set(reference)
    for key, value in reference.items():
        if "double_value" in value.DESCRIPTOR.fields_by_name and value.HasField("double_value"):
            np.testing.assert_allclose(batched[key].double_value.value, value.double_value.value,
                                       rtol=1e-9, atol=1e-12, err_msg=str(key))
        else:  # a plot (calibration sums, confusion matrices): the same up to float summation order
            _assert_close(json_format.MessageToDict(batched[key]), json_format.MessageToDict(value), str(key))
    assert batched_validation.validation_ok == reference_validation.validation_ok
    assert [str(s.failures) for s in batched_validation.metric_validations_per_slice] == \
        [str(s.failures) for s in reference_validation.metric_validations_per_slice]
    return batched


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A quickly trained taxi model and penguin model, pushed by the real job."""
    out = tmp_path_factory.mktemp("trained")
    models = {}
    for name, config, overrides in (("taxi", TAXI_CONFIG, {"hyperparameters": '{"epochs": 1, "steps_per_epoch": 30}'}),
                                    ("penguins", PENGUINS_CONFIG, {})):
        code, manifest = run_job(*job_args(out / name, name, config=config, **overrides))
        assert code == 0, manifest.get("error")
        models[name] = os.path.join(str(out / name / "runs"), name, "model", "serving")  # pushed or not
    return models


@pytest.mark.model
def test_binary_metrics_slices_diffs_and_thresholds_match_tfma(tmp_path, trained):
    batch, fmt = _rows(os.path.join(ROOT, "examples", "taxi", "data", "taxi.csv"), TAXI_CONFIG, 2500)
    config, models = _eval_config(
        trained["taxi"], "tips", ["ExampleCount", "AUC", "AUCPrecisionRecall", "BinaryAccuracy", "Precision", "Recall",
                                  "MeanPrediction", "MeanLabel", "Calibration", "ConfusionMatrixPlot",
                                  "CalibrationPlot"],
        [[], ["payment_type"], ["trip_start_hour", "payment_type"], ["company"]],
        {"AUC": {"lower": 0.99}, "BinaryAccuracy": {"lower": 0.5}}, {"AUC": {"direction": "higher", "absolute": 0.01}},
        with_baseline=True, fairness_features=["payment_type", "pickup_community_area"])
    values = _assert_same_results(tmp_path, batch, fmt, config, models)
    assert len(values) > 1000  # every slice, metric, model and diff
    assert any("is_diff: true" in key for _, key in values)
    # Fairness Indicators' rates, on every slice of the sensitive features (one added as a slice for them)
    fairness = [key for key in values if 'name: "fpr@0.5"' in key[1] or 'name: "fnr@0.5"' in key[1]]
    assert any("pickup_community_area" in slice_key for slice_key, _ in fairness)
    assert len({slice_key for slice_key, _ in fairness if "payment_type" in slice_key}) >= 3


@pytest.mark.model
def test_multi_class_predictions_flatten_and_keras_metrics_as_in_tfma(tmp_path, trained):
    batch, fmt = _rows(PENGUINS_CSV, PENGUINS_CONFIG, 344)
    config, models = _eval_config(trained["penguins"], "species",
                                  ["ExampleCount", "AUC", "BinaryAccuracy", "MeanLabel", "SparseCategoricalAccuracy",
                                   "SparseTopKCategoricalAccuracy", "MultiClassConfusionMatrixPlot"],
                                  [[], ["island"], ["sex", "island"]], {"AUC": {"lower": 0.5}}, {},
                                  with_baseline=False)
    _assert_same_results(tmp_path, batch, fmt, config, models)


def test_a_one_class_model_s_confusion_matrix_counts_class_zero_instead_of_failing():
    config = model_eval_lib._update_eval_config_with_defaults(
        build_eval_config("species", ["MultiClassConfusionMatrixPlot"], [[]], {}, {}, with_baseline=False), None)
    accumulators = [a for a in batched_metrics._accumulators(config)
                    if isinstance(a, batched_metrics._MultiClassConfusionMatrix)]
    [matrix] = accumulators
    partial = matrix.add(np.zeros((3, 1)), np.ones((3, 1)), np.ones(3))
    assert {t: entries for t, entries in partial.items()} == {t: {(0, 0): 3.0} for t in partial}
    two = matrix.add(np.array([[0.0], [1.0]]), np.array([[0.9, 0.1], [0.2, 0.8]]), np.ones(2))
    merged = matrix.combine(partial, two)
    assert all(entries == {(0, 0): 4.0, (1, 1): 1.0} for entries in merged.values())
