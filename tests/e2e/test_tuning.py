"""Tuning inside the training job on the penguins: 8 trials in rounds of 4, the best trial's values train the model
that is evaluated and pushed, every trial in the run record and the report."""
import json

import tensorflow as tf

from beam_ml.lineage.store import open_store
from tests.support.jobs import job_args, run_job

TUNING = {"study": "penguins-width", "objective": "val_sparse_categorical_accuracy", "trials": 8, "parallelism": 4,
          "search_space": {"hidden_units": {"low": 2, "high": 32, "int": True},
                           "learning_rate": {"low": 0.0003, "high": 0.1, "log": True}}}
QUICK = {"epochs": 3, "steps_per_epoch": 20, "batch_size": 32, "hidden_units": 16, "learning_rate": 0.01}


def _hidden_width(model_dir: str) -> int:
    """The width of the penguin model's hidden layer: the kernel that maps the encoded inputs to it."""
    kernels = [v for v in tf.saved_model.load(model_dir).variables if v.name.endswith("kernel:0")]
    first, last = sorted(kernels, key=lambda v: v.name)  # dense/kernel (inputs → hidden), dense_1/kernel (→ species)
    assert first.shape[1] == last.shape[0]
    return int(first.shape[1])


def test_eight_trials_in_rounds_of_four_and_the_best_one_trains_the_model(tmp_path):
    code, record = run_job(*job_args(tmp_path, "tuned", tuning=json.dumps(TUNING), hyperparameters=json.dumps(QUICK)))
    assert code == 0, record.get("error")
    tuning = record["tuning"]
    trials = tuning["trials"]
    assert len(trials) == 8 and tuning["new_trials"] == 8 and [t["number"] for t in trials] == list(range(8))
    assert all(t["state"] == "complete" and t["run_id"] == "tuned" for t in trials)  # 4 complete: none pruned yet
    assert all(len(t["intermediate"]) == QUICK["epochs"] for t in trials)  # the objective after every epoch
    best = max(trials, key=lambda t: (t["value"], -t["number"]))
    assert tuning["best"] == best
    assert len({t["params"]["hidden_units"] for t in trials}) > 1  # the trials tried different models
    assert _hidden_width(record["pushed_model_dir"]) == best["params"]["hidden_units"]
    assert record["blessed"] and "tuned" in [s["stage"] for s in record["stages"]]
    with open(tmp_path / "runs" / "study-penguins-width.json") as f:
        assert json.load(f)["trials"] == trials
    with open(tmp_path / "runs" / "tuned" / "tuning" / "hyperparameters.json") as f:
        assert json.load(f)["hyperparameters"] == {**QUICK, **best["params"]}
    store = open_store(str(tmp_path / "runs" / "metadata.sqlite"))
    [artifact] = store.get_artifacts_by_type("HyperParameters")
    assert artifact.custom_properties["best_trial"].int_value == best["number"]
    with open(tmp_path / "runs" / "tuned" / "report" / "index.html") as f:
        page = f.read()
    assert '<section id="tuning">' in page and "8 trials (8 in this run)" in page
