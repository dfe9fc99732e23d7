"""scikit-learn and XGBoost models beside the tf.Transform graph: export, the model directory, loading and scoring raw
rows exactly as the model scores the transformed arrays it was fitted on; the errors a module's author meets."""
import dataclasses
import json
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import xgboost
from apache_beam.testing.test_pipeline import TestPipeline
from sklearn.linear_model import LinearRegression, LogisticRegression
from tfx_bsl.coders import example_coder

from beam_ml.ingest.files.csv_format import infer_csv_format, parse_csv_chunk
from beam_ml.model.artifact import MODEL_INFO, SKLEARN, TENSORFLOW, XGBOOST, is_model, model_framework
from beam_ml.model.estimators import (EstimatorModel, estimator_scores, export_sklearn, export_xgboost,
                                      feature_layout)
from beam_ml.model.push import push_model, versions
from beam_ml.train.trainer import FnArgs, check_export, module_framework
from beam_ml.train.transform import TransformSplits, transformed_files
from transforms import penguins


@pytest.fixture(scope="module")
def penguin_transform(tmp_path_factory, penguins_rows) -> dict:
    """The penguins' tf.Transform output (eval: every third row, train: the others) and the raw eval rows as
    serialized examples."""
    base = tmp_path_factory.mktemp("transform")
    header, body = penguins_rows[0].encode(), ("\n".join(penguins_rows[1:]) + "\n").encode()
    fmt = infer_csv_format(header, body, {"year": "int"})
    batch = parse_csv_chunk(body, fmt, "p.csv", lambda: 2).batch
    train = batch.take([i for i in range(batch.num_rows) if i % 3])
    evaluation = batch.take([i for i in range(batch.num_rows) if not i % 3])
    out_dir = str(base / "transform")
    with TestPipeline() as p:
        _ = ({"train": p | "Train" >> beam.Create([train]), "eval": p | "Eval" >> beam.Create([evaluation])}
             | TransformSplits(penguins.preprocessing_fn, fmt, out_dir, str(base / "tmp")))
    return {"dir": out_dir, "base": base,
            "eval_examples": example_coder.RecordBatchToExamplesEncoder().encode(evaluation)}


def _fn_args(transform: dict, name: str) -> FnArgs:
    out = transform["dir"]
    return FnArgs(train_files=tuple(transformed_files(out, "train")), eval_files=tuple(transformed_files(out, "eval")),
                  transform_output=out, schema_path="", serving_model_dir=str(transform["base"] / name / "serving"),
                  model_run_dir=str(transform["base"] / name / "logs"), label="species")


def test_arrays_give_the_transformed_examples_side_by_side(penguin_transform):
    fn_args = _fn_args(penguin_transform, "arrays")
    x, y = fn_args.arrays(fn_args.train_files)
    assert x.dtype == np.float32 and x.shape == (229, 6) and y.shape == (229,)
    assert fn_args.feature_names == sorted([*penguins.NUMERIC, *penguins.CATEGORICAL])
    body_mass = x[:, fn_args.feature_names.index("body_mass_g")]
    assert abs(body_mass.mean()) < 1e-5 and abs(body_mass.std() - 1) < 0.01  # z-scored on train
    assert sorted(set(y.tolist())) == [0, 1, 2]  # the species' vocabulary indices


def test_a_sklearn_model_exports_beside_its_transform_and_scores_raw_rows_as_it_was_fitted(penguin_transform):
    fn_args = _fn_args(penguin_transform, "sklearn")
    x, y = fn_args.arrays(fn_args.train_files)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    export_sklearn(model, fn_args)
    model_dir = fn_args.serving_model_dir
    assert model_framework(model_dir) == SKLEARN and is_model(model_dir)
    with open(os.path.join(model_dir, MODEL_INFO)) as f:
        info = json.load(f)
    assert info == {"framework": "sklearn", "label": "species",
                    "features": [[name, 1] for name in sorted([*penguins.NUMERIC, *penguins.CATEGORICAL])]}

    loaded = EstimatorModel(model_dir)
    raw = penguin_transform["eval_examples"]
    x_eval, y_eval = fn_args.arrays(fn_args.eval_files)  # the same rows, transformed by tf.Transform's Beam job
    np.testing.assert_allclose(loaded.predict_examples(raw), model.predict_proba(x_eval), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(loaded.transformed_label(raw), y_eval)

    serving = str(penguin_transform["base"] / "serving")
    pushed = push_model(model_dir, serving, "push-1")
    assert versions(serving) == [int(os.path.basename(pushed))] and model_framework(pushed) == SKLEARN


def test_an_xgboost_binary_model_answers_the_probability_of_class_one(penguin_transform):
    fn_args = _fn_args(penguin_transform, "xgboost")
    x, y = fn_args.arrays(fn_args.train_files)
    is_adelie = (y == 0).astype(np.int64)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 2, "seed": 1},
                            xgboost.DMatrix(x, label=is_adelie), num_boost_round=10)
    export_xgboost(booster, fn_args)
    assert model_framework(fn_args.serving_model_dir) == XGBOOST
    x_eval, _ = fn_args.arrays(fn_args.eval_files)
    scores = EstimatorModel(fn_args.serving_model_dir).predict_examples(penguin_transform["eval_examples"])
    assert scores.shape == (len(x_eval), 1)
    np.testing.assert_allclose(scores[:, 0], booster.predict(xgboost.DMatrix(x_eval)), rtol=1e-6)


def test_a_regressor_answers_its_prediction_as_one_column(penguin_transform):
    fn_args = _fn_args(penguin_transform, "regressor")
    x, _ = fn_args.arrays(fn_args.train_files)
    model = LinearRegression().fit(x[:, 1:], x[:, 0])
    np.testing.assert_allclose(estimator_scores(model, SKLEARN, x[:5, 1:]), model.predict(x[:5, 1:])[:, None],
                               rtol=1e-6)


def test_a_classifier_fitted_on_other_labels_than_the_indices_is_refused(penguin_transform):
    fn_args = _fn_args(penguin_transform, "strings")
    x, y = fn_args.arrays(fn_args.train_files)
    model = LogisticRegression(max_iter=200).fit(x, np.array(["a", "b", "c"])[y])
    with pytest.raises(ValueError, match="not the label indices"):
        export_sklearn(model, fn_args)
    model = LogisticRegression(max_iter=200).fit(x[y > 0], y[y > 0])  # classes 1 and 2: index 0 never seen
    with pytest.raises(ValueError, match=r"classes are \[1, 2\]"):
        export_sklearn(model, fn_args)


def test_a_feature_of_varying_length_is_refused_with_the_way_out(tmp_path):
    class Output:
        def transformed_feature_spec(self):
            return {"words": tf.io.VarLenFeature(tf.string), "x": tf.io.FixedLenFeature([3], tf.float32),
                    "y": tf.io.FixedLenFeature([], tf.int64)}
    with pytest.raises(ValueError, match="'words' has a varying number of values.*sparse_tensor_to_dense_with_shape"):
        feature_layout(Output(), "y")


def test_what_training_exported_is_checked_against_the_modules_framework(penguin_transform, tmp_path):
    fn_args = _fn_args(penguin_transform, "checked")
    x, y = fn_args.arrays(fn_args.train_files)
    export_sklearn(LogisticRegression(max_iter=200).fit(x, y), fn_args)
    check_export("m", SKLEARN, fn_args.serving_model_dir)
    with pytest.raises(RuntimeError, match=r"\(FRAMEWORK 'xgboost'\) exported a sklearn model.*export_xgboost"):
        check_export("m", XGBOOST, fn_args.serving_model_dir)
    with pytest.raises(RuntimeError, match=r"exported nothing to .*no saved_model.pb.*export_serving_model"):
        check_export("m", TENSORFLOW, str(tmp_path / "empty"))

    @dataclasses.dataclass
    class Module:
        FRAMEWORK: str = "lightgbm"
    with pytest.raises(ValueError, match="'lightgbm' is not one of tensorflow, sklearn, xgboost"):
        module_framework(Module())
    assert module_framework(object()) == TENSORFLOW  # a module without FRAMEWORK trains tf_keras
