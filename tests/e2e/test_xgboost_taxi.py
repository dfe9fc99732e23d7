"""Taxi with XGBoost (`transforms.taxi_xgboost`) on the bundled trips: tuned inside the job (trials as elements,
pruned round by round), blessed on the Keras model's thresholds by TFMA's model-agnostic evaluation and pushed; batch
prediction through Beam's XGBoost handler gives what the Booster itself answers on the run's transformed eval rows;
the job translates for Dataflow."""
import csv
import glob
import json
import os

import numpy as np
import pytest
import tensorflow_transform as tft
import xgboost

from beam_ml.core.layout import RunLayout
from beam_ml.model.artifact import model_framework
from beam_ml.model.estimators import feature_layout, feature_matrix, read_transformed
from beam_ml.train.transform import transformed_files
from tests.e2e.test_dataflow_translation import _translate
from tests.support.jobs import job_args, run_job
from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e

MODULE = "transforms.taxi_xgboost"
TAXI_CONFIG = os.path.join(ROOT, "examples", "taxi", "config.yaml")
TAXI_CSV = os.path.join(ROOT, "examples", "taxi", "data", "taxi.csv")
# Six trials, three at a time; each boosting round reports the eval AUC, so a trial worse than the others is pruned.
TUNING = {"study": "taxi-trees", "objective": "auc", "trials": 6, "parallelism": 3,
          "search_space": {"max_depth": {"low": 2, "high": 8, "int": True}, "eta": {"low": 0.02, "high": 0.3,
                                                                                    "log": True}}}
BASE = {"rounds": 150}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """A tuned run, then a second run of the same study (complete: no new trials) judged against the first's model."""
    base = tmp_path_factory.mktemp("taxi_xgboost")
    manifests = {}
    for run_id in ("trees", "again"):
        code, manifest = run_job(*job_args(base, run_id, config=TAXI_CONFIG, module=MODULE, anomaly_policy="warn",
                                           hyperparameters=json.dumps(BASE), tuning=json.dumps(TUNING),
                                           no_cache="true"))
        assert code == 0, manifest.get("error")
        manifests[run_id] = manifest
    return manifests


@pytest.fixture(scope="module")
def tuned_run(runs) -> dict:
    return runs["trees"]


def test_the_second_run_is_compared_with_the_first_model_and_pushed(runs):
    second = runs["again"]
    assert second["tuning"]["new_trials"] == 0 and second["tuning"]["best"] == runs["trees"]["tuning"]["best"]
    assert second["blessed"] is True and second["metrics"]["auc"] == pytest.approx(runs["trees"]["metrics"]["auc"])
    assert second["baseline_model"] == runs["trees"]["pushed_model_dir"]
    assert second["evaluation_mode"] == "value and change thresholds against the baseline model"
    assert second["pushed_model_dir"] != runs["trees"]["pushed_model_dir"]


def test_xgboost_is_tuned_blessed_with_auc_095_and_pushed(tuned_run):
    assert tuned_run["blessed"] is True and tuned_run["metrics"]["auc"] >= 0.95, tuned_run["metrics"]
    pushed = tuned_run["pushed_model_dir"]
    assert model_framework(pushed) == "xgboost" and tuned_run["infra_validation"]["ok"] is True
    trials = tuned_run["tuning"]["trials"]
    assert len(trials) == 6 and all(t["state"] in ("complete", "pruned") for t in trials)
    assert all(len(t["intermediate"]) >= 1 for t in trials)  # the AUC after every boosting round
    best = tuned_run["tuning"]["best"]
    booster = xgboost.Booster()
    booster.load_model(os.path.join(pushed, "model.bst"))
    deepest = max(_depth(json.loads(tree)) for tree in booster.get_dump(dump_format="json"))
    assert deepest == best["params"]["max_depth"]  # the best trial's values trained the pushed model
    with open(os.path.join(tuned_run["run_dir"], "tuning", "hyperparameters.json")) as f:
        assert json.load(f)["hyperparameters"] == {**BASE, **best["params"]}


def _depth(node: dict) -> int:
    return 0 if "children" not in node else 1 + max(_depth(child) for child in node["children"])


def test_batch_prediction_gives_the_boosters_own_answers_on_the_transformed_eval_rows(tuned_run, tmp_path):
    from jobs.batch_predict import main
    with open(TAXI_CSV) as f, open(tmp_path / "trips.csv", "w", newline="") as out:
        rows = csv.reader(f)
        writer = csv.writer(out)
        writer.writerow(["trip_id", *next(rows)])
        writer.writerows([f"T{i:05d}", *row] for i, row in enumerate(rows))
    pushed = tuned_run["pushed_model_dir"]
    assert main(["--input", str(tmp_path / "trips.csv"), "--key_column", "trip_id", "--output_dir",
                 str(tmp_path / "predict"), "--serving_dir", os.path.dirname(pushed), "--run_id", "p"]) == 0
    predictions = [json.loads(line) for path in glob.glob(str(tmp_path / "predict" / "p" / "predictions" / "*.jsonl"))
                   for line in open(path)]
    assert len(predictions) == tuned_run["counts"]["read"]
    scores = np.sort(np.array([p["outputs"][0] for p in predictions]))

    transform = RunLayout(tuned_run["run_dir"]).transform
    output = tft.TFTransformOutput(transform)
    eval_rows = feature_matrix(read_transformed(transformed_files(transform, "eval"), output),
                               feature_layout(output, "tips"))
    booster = xgboost.Booster()
    booster.load_model(os.path.join(pushed, "model.bst"))
    direct = booster.predict(xgboost.DMatrix(eval_rows))
    assert len(direct) == tuned_run["counts"]["splits"]["eval"]
    nearest = np.clip(np.searchsorted(scores, direct), 1, len(scores) - 1)
    gap = np.minimum(np.abs(scores[nearest] - direct), np.abs(scores[nearest - 1] - direct))
    assert gap.max() < 1e-6  # every eval trip's answer is one batch prediction gave


def test_the_xgboost_job_translates_for_dataflow_offline(tmp_path):
    out = _translate("train_pipeline", ["--config", TAXI_CONFIG, "--module", MODULE, "--output_dir",
                                        str(tmp_path / "runs"), "--serving_dir", str(tmp_path / "serving")])
    for stage in ["Transform/Analyze", "Train/RunFn", "Evaluate/AddPredictions", "Evaluate/Tfma", "Push"]:
        assert any(t.startswith(f"TrainPipeline/{stage}") for t in out["transforms"]), stage
