"""Chicago taxi trips with XGBoost: will the tip exceed 20% of the fare? Gradient-boosted trees take the numbers as
they are (a missing one stays missing: XGBoost learns where it goes) and the categories as vocabulary indices.

    python -m jobs.train_pipeline --config examples/taxi/config.yaml --module transforms.taxi_xgboost \\
        --output_dir runs/taxi_xgboost --serving_dir serving/taxi_xgboost --anomaly_policy warn

Hyperparameters (all optional, named as XGBoost names them): rounds, max_depth, eta, min_child_weight, subsample.
In a tuning trial each boosting round reports the eval AUC (`auc`), so that a trial going worse than the study's
others is stopped.
"""
from __future__ import annotations

import tensorflow as tf
import xgboost

from beam_ml.model.estimators import export_xgboost
from beam_ml.train.trainer import FnArgs
from transforms.features import fill_missing, vocabulary_index
from transforms.taxi import FARE, LABEL, OOV_BUCKETS, VOCAB_TOP_K

FRAMEWORK = "xgboost"
NUMERIC = ("trip_miles", "fare", "trip_seconds", "pickup_latitude", "pickup_longitude", "dropoff_latitude",
           "dropoff_longitude", "trip_start_hour", "trip_start_day", "trip_start_month")
CATEGORICAL = ("payment_type", "company", "pickup_community_area", "dropoff_community_area", "pickup_census_tract",
               "dropoff_census_tract")


def preprocessing_fn(inputs: dict) -> dict:
    outputs = {name: fill_missing(tf.cast(inputs[name], tf.float32), float("nan")) for name in NUMERIC}
    for name in CATEGORICAL:
        outputs[name] = vocabulary_index(inputs[name], name, top_k=VOCAB_TOP_K, num_oov_buckets=OOV_BUCKETS)
    tips = fill_missing(inputs[LABEL], 0.0)
    outputs[LABEL] = tf.cast(tf.greater(tips, 0.2 * fill_missing(inputs[FARE], 0.0)), tf.int64)
    return outputs


class _ReportRounds(xgboost.callback.TrainingCallback):
    """Reports each round's eval AUC to a tuning trial's pruning; stops training when the trial is pruned."""

    def __init__(self, pruning):
        super().__init__()
        self._pruning = pruning

    def after_iteration(self, model, epoch: int, evals_log: dict) -> bool:
        return self._pruning.report(epoch, {"auc": evals_log["eval"]["auc"][-1]})


def run_fn(fn_args: FnArgs) -> dict[str, float]:
    hp = fn_args.hyperparameters
    x, y = fn_args.arrays(fn_args.train_files)
    x_eval, y_eval = fn_args.arrays(fn_args.eval_files)
    train, evaluation = xgboost.DMatrix(x, label=y), xgboost.DMatrix(x_eval, label=y_eval)
    params = {"objective": "binary:logistic", "eval_metric": "auc", "tree_method": "hist", "seed": fn_args.seed,
              "max_depth": int(hp.get("max_depth", 6)), "eta": float(hp.get("eta", 0.05)),
              "min_child_weight": float(hp.get("min_child_weight", 1.0)), "subsample": float(hp.get("subsample", 0.8))}
    log: dict = {}
    booster = xgboost.train(params, train, num_boost_round=int(hp.get("rounds", 300)), evals=[(evaluation, "eval")],
                            evals_result=log, verbose_eval=False,
                            callbacks=[_ReportRounds(fn_args.pruning)] if fn_args.pruning else None)
    export_xgboost(booster, fn_args)
    return {"auc": float(log["eval"]["auc"][-1])}
