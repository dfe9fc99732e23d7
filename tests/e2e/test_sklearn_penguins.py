"""Penguins with scikit-learn (`transforms.penguins_sklearn`): trained, evaluated by TFMA the model-agnostic way
(slices, a baseline comparison on the second run, the blessing), pushed; batch prediction through Beam's scikit-learn
handler gives what the model itself answers on the run's transformed eval rows; both jobs translate for Dataflow."""
import glob
import json
import os
import shutil

import joblib
import numpy as np
import pytest
import tensorflow_model_analysis as tfma
import tensorflow_transform as tft

from beam_ml.core.layout import RunLayout
from beam_ml.model.artifact import MODEL_INFO, TENSORFLOW, model_framework
from beam_ml.model.estimators import feature_layout, feature_matrix, read_transformed
from beam_ml.model.push import versions
from beam_ml.serve import Predictor
from beam_ml.train.transform import transformed_files
from tests.e2e.test_dataflow_translation import _translate
from tests.support.jobs import job_args, run_job
from tests.support.paths import PENGUINS_CONFIG, ROOT

pytestmark = pytest.mark.e2e

MODULE = "transforms.penguins_sklearn"
UNLABELLED = os.path.join(ROOT, "examples", "penguins", "unlabelled", "*.csv")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("penguins_sklearn")
    manifests = {}
    for run_id in ("first", "second"):
        code, manifest = run_job(*job_args(base, run_id, module=MODULE, no_cache="true"))
        assert code == 0, manifest.get("error")
        manifests[run_id] = manifest
    return {"base": base, **manifests}


def _slices(evaluation_dir: str) -> dict:
    """{slice: {metric key name (with ' diff' for a change vs the baseline): value}} of the candidate."""
    found = {}
    for for_slice in tfma.load_metrics(evaluation_dir):
        name = ", ".join(f"{k.column} = {k.bytes_value.decode() or k.int64_value}"
                         for k in for_slice.slice_key.single_slice_keys) or "Overall"
        for item in for_slice.metric_keys_and_values:
            if item.key.model_name in ("", "candidate") and item.value.HasField("double_value"):
                found.setdefault(name, {})[item.key.name + (" diff" if item.key.is_diff else "")] = \
                    item.value.double_value.value
    return found


def test_two_sklearn_runs_are_evaluated_by_tfma_against_the_baseline_and_pushed(two_runs):
    first, second = two_runs["first"], two_runs["second"]
    for manifest in (first, second):
        assert manifest["status"] == "succeeded" and manifest["blessed"] is True, manifest.get("threshold_failures")
        assert manifest["metrics"]["sparse_categorical_accuracy"] >= 0.9
        assert manifest["infra_validation"]["ok"] is True
        pushed = manifest["pushed_model_dir"]
        assert model_framework(pushed) == "sklearn" and not os.path.exists(os.path.join(pushed, "saved_model.pb"))
        for part in ("model.joblib", "transform_fn", "transformed_metadata", MODEL_INFO,
                     os.path.join("assets.extra", "labels.json")):
            assert os.path.exists(os.path.join(pushed, part)), part
    serving_dir = os.path.dirname(second["pushed_model_dir"])
    assert len(versions(serving_dir)) == 2
    assert not os.path.exists(os.path.join(serving_dir, "models.config"))  # TF Serving's: not for this model

    first_slices = _slices(RunLayout(first["run_dir"]).evaluation)
    assert {"Overall", "island = Biscoe", "island = Dream", "island = Torgersen"} <= set(first_slices)
    assert not any(" diff" in name for metrics in first_slices.values() for name in metrics)  # no baseline yet
    second_slices = _slices(RunLayout(second["run_dir"]).evaluation)
    assert second_slices["Overall"]["sparse_categorical_accuracy diff"] == pytest.approx(0.0, abs=1e-9)  # same model
    with open(os.path.join(second["pushed_model_dir"], "assets.extra", "labels.json")) as f:
        labels = json.load(f)
    vocabulary = tft.TFTransformOutput(second["pushed_model_dir"]).vocabulary_by_name("species")
    assert labels["classes"] == [v.decode() for v in vocabulary] and len(labels["classes"]) == 3
    assert labels["output_shape"] == [None, 3]


def test_batch_prediction_gives_the_models_own_answers_on_the_transformed_eval_rows(two_runs, tmp_path):
    from jobs.batch_predict import main
    second = two_runs["second"]
    pushed = second["pushed_model_dir"]
    assert main(["--input", UNLABELLED, "--key_column", "penguin_id", "--serving_dir", os.path.dirname(pushed),
                 "--output_dir", str(tmp_path / "predict"), "--run_id", "p"]) == 0
    with open(tmp_path / "predict" / "p" / "run_manifest.json") as f:
        assert json.load(f)["counts"] == {"read": 344, "predicted": 344, "dead_letter": 0}
    predictions = [json.loads(line) for path in glob.glob(str(tmp_path / "predict" / "p" / "predictions" / "*.jsonl"))
                   for line in open(path)]
    scores = np.array([p["outputs"] for p in predictions])
    assert scores.shape == (344, 3)

    # The model file called directly on the rows tf.Transform wrote for the run's eval split (an independent path:
    # Beam's TransformDataset, not the model's own transform graph): each row's answer is some penguin's prediction.
    transform = RunLayout(second["run_dir"]).transform
    output = tft.TFTransformOutput(transform)
    eval_rows = feature_matrix(read_transformed(transformed_files(transform, "eval"), output),
                               feature_layout(output, "species"))
    direct = joblib.load(os.path.join(pushed, "model.joblib")).predict_proba(eval_rows)
    assert len(direct) == second["counts"]["splits"]["eval"] == 101
    distance = np.abs(direct[:, None, :] - scores[None, :, :]).max(axis=2)
    assert distance.min(axis=1).max() < 1e-5
    classes = {p["class"] for p in predictions}
    assert classes == {"Adelie", "Gentoo", "Chinstrap"}

    # beam_ml.serve answers as batch prediction does, from raw rows.
    predictor = Predictor.latest(os.path.dirname(pushed))
    row = {"island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": 14.2, "flipper_length_mm": 209.0,
           "body_mass_g": 4600.0, "sex": "female", "year": 2008}
    (answer,) = predictor.predict([row])
    assert answer["class"] == "Gentoo" and sum(answer["outputs"]) == pytest.approx(1.0, abs=1e-5)
    assert predictor.feature_rows([row]).shape == (1, eval_rows.shape[1])


def test_sklearn_jobs_translate_for_dataflow_offline(two_runs, tmp_path):
    out = _translate("train_pipeline", ["--config", PENGUINS_CONFIG, "--module", MODULE,
                                        "--output_dir", str(tmp_path / "runs"),
                                        "--serving_dir", os.path.dirname(two_runs["second"]["pushed_model_dir"])])
    for stage in ["Train/RunFn", "Evaluate/AddPredictions", "Evaluate/Tfma", "InfraValidate", "Push"]:
        assert any(t.startswith(f"TrainPipeline/{stage}") for t in out["transforms"]), stage
    out = _translate("batch_predict", ["--input", UNLABELLED, "--key_column", "penguin_id",
                                       "--output_dir", str(tmp_path / "predict"),
                                       "--serving_dir", os.path.dirname(two_runs["second"]["pushed_model_dir"])])
    assert any(t.startswith("BatchPredict/ToFeatureRows") for t in out["transforms"])
    assert any(t.startswith("BatchPredict/RunInference") for t in out["transforms"])


def test_a_module_exporting_another_framework_than_it_declares_fails_in_training(tmp_path):
    module = tmp_path / "liar.py"
    module.write_text("from transforms.penguins import preprocessing_fn, run_fn\nFRAMEWORK = 'sklearn'\n")
    code, manifest = run_job(*job_args(tmp_path, "liar", module=str(module), infra_validation="false"))
    assert code != 0
    assert "(FRAMEWORK 'sklearn') exported a tensorflow model" in manifest["error"]
    assert model_framework(os.path.join(manifest["run_dir"], "model", "serving")) == TENSORFLOW


def test_a_sklearn_model_is_judged_against_a_serving_keras_model(launched_penguins, tmp_path):
    bucket, keras_run = launched_penguins
    shutil.copytree(os.path.dirname(keras_run["pushed_model_dir"]), tmp_path / "serving")
    code, manifest = run_job(*job_args(tmp_path, "over-keras", module=MODULE))
    assert code == 0, manifest.get("error")
    assert manifest["blessed"] is True and model_framework(manifest["pushed_model_dir"]) == "sklearn"
    diffs = _slices(RunLayout(manifest["run_dir"]).evaluation)["Overall"]
    keras_accuracy = keras_run["metrics"]["sparse_categorical_accuracy"]  # on the same eval split
    assert diffs["sparse_categorical_accuracy diff"] == pytest.approx(
        manifest["metrics"]["sparse_categorical_accuracy"] - keras_accuracy, abs=1e-6)


def test_tflite_for_a_sklearn_module_fails_at_launch_naming_the_option(tmp_path, capsys):
    code, manifest = run_job(*job_args(tmp_path, "lite", module=MODULE, export_tflite="true"))
    assert code == 2 and manifest == {}
    err = capsys.readouterr().err
    assert "--export_tflite" in err and "sklearn model" in err
    assert not os.path.exists(tmp_path / "runs" / "lite")


def test_a_sklearn_model_is_tuned_inside_the_job(tmp_path):
    tuning = {"study": "penguins-c", "objective": "accuracy", "trials": 4, "parallelism": 2,
              "search_space": {"C": {"low": 0.001, "high": 100.0, "log": True}}}
    code, manifest = run_job(*job_args(tmp_path, "tuned", module=MODULE, tuning=json.dumps(tuning)))
    assert code == 0, manifest.get("error")
    trials = manifest["tuning"]["trials"]
    assert len(trials) == 4 and all(t["state"] == "complete" for t in trials)
    best = manifest["tuning"]["best"]
    assert best["value"] == max(t["value"] for t in trials)
    model = joblib.load(os.path.join(manifest["pushed_model_dir"], "model.joblib"))
    assert model.named_steps["classify"].C == pytest.approx(best["params"]["C"])  # the best trial's C trained it
