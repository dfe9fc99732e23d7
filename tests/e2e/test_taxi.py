"""The taxi example end to end on its real (bundled) data: the model reaches the quality a user expects, its
report's fairness section shows TFMA's rates per payment type, and its TFLite version answers as it does."""
import csv
import glob
import json
import math
import os

import pytest
import tensorflow_model_analysis as tfma

from beam_ml.core.layout import RunLayout
from tests.support.browser import Browser
from tests.support.jobs import job_args, run_job
from tests.support.paths import TAXI_CONFIG, TAXI_CSV
from tests.support.serving_checks import assert_serving_requests_give_batch_predictions, eval_rows

pytestmark = pytest.mark.e2e


def test_taxi_reaches_auc_093_and_is_pushed(tmp_path):
    code, manifest = run_job(*job_args(tmp_path, "taxi", config=TAXI_CONFIG, export_tflite="true",
                                       tflite_quantization="float16"))
    assert code == 0, manifest.get("error")
    assert manifest["metrics"]["auc"] >= 0.93
    assert manifest["blessed"] is True and manifest["pushed_model_dir"]
    counts = manifest["counts"]
    assert counts["read"] == 14975 and counts["dead_letter"] == 0
    assert counts["read"] == sum(counts["splits"].values())
    # TFDV finds real, expected anomalies here (eval companies unseen in train); policy warn records them
    assert any(a["feature"] == "company" for a in manifest["anomalies"])

    _assert_fairness_section_shows_tfma_rates(manifest)
    _assert_confusion_matrix_is_tfma_s(manifest)

    lite = manifest["tflite"]  # the TFLite model (tf.Transform's vocabularies and buckets inside) answers alike
    # (nearly every taxi row lacks some column, so serving_raw gets few rows or none; serving_default gets all)
    assert lite["within_bound"] is True and lite["rows"] == 200
    plain, half = lite["variants"]
    assert plain["max_abs_difference"] <= 1e-4 and plain["metrics"]["auc"]["change"] == 0
    # float16 rounds every float constant, the transform's bucket boundaries too: smaller, and a measured AUC change
    assert half["quantization"] == "float16" and half["bytes"] < 0.8 * plain["bytes"]
    assert half["max_abs_difference"] > 1e-4 and abs(half["metrics"]["auc"]["change"]) < 0.05
    assert os.path.exists(os.path.join(manifest["pushed_model_dir"], "model.tflite"))
    _assert_batch_prediction_and_serving_requests_agree(manifest, tmp_path)


def _assert_batch_prediction_and_serving_requests_agree(manifest: dict, tmp_path) -> None:
    """50 eval trips (most lack some column) predicted by the batch job with the pushed version, and the same
    rows sent as TF Serving REST and gRPC requests."""
    from jobs.batch_predict import main as batch_predict
    rows = eval_rows(TAXI_CONFIG, TAXI_CSV, 50, complete=False)
    with open(tmp_path / "trips.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["trip", *rows[0]])
        writer.writeheader()
        writer.writerows({"trip": str(i), **{k: "" if v is None else v for k, v in row.items()}}
                         for i, row in enumerate(rows))
    assert batch_predict(["--input", str(tmp_path / "trips.csv"), "--key_column", "trip", "--serving_dir",
                          str(tmp_path / "serving"), "--output_dir", str(tmp_path / "predict"),
                          "--run_id", "trips"]) == 0
    predicted = {p["key"]: p["outputs"] for path in glob.glob(str(tmp_path / "predict" / "trips" / "predictions"
                                                                   / "*.jsonl")) for p in map(json.loads, open(path))}
    assert len(predicted) == 50
    assert_serving_requests_give_batch_predictions(manifest["pushed_model_dir"], rows,
                                                   [predicted[str(i)] for i in range(50)], "serving", "tips")


def _assert_confusion_matrix_is_tfma_s(manifest: dict) -> None:
    [overall] = [p for p in tfma.load_plots(RunLayout(manifest["run_dir"]).evaluation)
                 if not p.slice_key.single_slice_keys]
    matrices = next(item.value.confusion_matrix_at_thresholds.matrices for item in overall.plot_keys_and_values
                    if item.value.HasField("confusion_matrix_at_thresholds"))
    at_half = next(m for m in matrices if abs(m.threshold - 0.5) < 1e-6)
    with Browser() as browser:
        browser.open("file://" + RunLayout(manifest["run_dir"]).report_file)
        rows = [row.split("\t") for row in browser.text("#evaluation table.confusion").splitlines()]
        calibration = browser.text("#evaluation table.calibration").splitlines()[1:]
    assert rows[1][1:] == [str(int(at_half.true_positives)), str(int(at_half.false_negatives))]
    assert rows[2][1:] == [str(int(at_half.false_positives)), str(int(at_half.true_negatives))]
    assert sum(int(row.split("\t")[1]) for row in calibration) == manifest["counts"]["splits"]["eval"]


def _assert_fairness_section_shows_tfma_rates(manifest: dict) -> None:
    run_dir = manifest["run_dir"]
    tfma_rates = {}  # {payment type: {rate: value, "example_count": n}} from TFMA's own output
    for record in tfma.load_metrics(RunLayout(run_dir).evaluation):
        keys = record.slice_key.single_slice_keys
        if len(keys) == 1 and keys[0].column == "payment_type":
            tfma_rates[keys[0].bytes_value.decode()] = {
                item.key.name: item.value.double_value.value for item in record.metric_keys_and_values
                if item.key.name in ("fpr@0.5", "fnr@0.5", "example_count")}
    assert len(tfma_rates) >= 3 and all(len(rates) == 3 for rates in tfma_rates.values())
    with Browser() as browser:
        load = browser.open("file://" + RunLayout(run_dir).report_file)
        assert load.console_errors == [] and len(load.requests) == 1
        rows = [row.split("\t") for row in browser.text("#fairness table").splitlines()[1:]]
        shots = os.environ.get("REPORT_SCREENSHOTS")
        if shots:
            browser.screenshot(os.path.join(os.path.abspath(shots), "fairness.png"), selector="#fairness")
    shown = {row[0]: row for row in rows}
    for group, rates in tfma_rates.items():
        for column, rate in ((2, "fpr@0.5"), (3, "fnr@0.5")):
            cell = shown[group][column] if len(shown[group]) > column else ""
            if math.isnan(rates[rate]):
                assert cell == "", (group, rate)  # no negatives (or positives) in the group: no rate
            else:
                assert float(cell) == pytest.approx(rates[rate], rel=1e-3), (group, rate)
    compared = [r for r in tfma_rates.values() if r["example_count"] >= manifest["config"]["fairness_min_examples"]]
    assert 2 <= len(compared) < len(tfma_rates)  # the taxi eval data has payment types of a handful of trips
    defined = {rate: [r[rate] for r in compared if not math.isnan(r[rate])] for rate in ("fpr@0.5", "fnr@0.5")}
    assert float(shown["gap"][2]) == pytest.approx(max(defined["fpr@0.5"]) - min(defined["fpr@0.5"]), rel=1e-3)
