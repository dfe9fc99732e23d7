"""Palmer penguins with scikit-learn: the tf.Transform preprocessing of `transforms.penguins` (z-scores, vocabulary
indices), then a scikit-learn pipeline: the two categorical indices one-hot encoded, a logistic regression.

    python -m jobs.train_pipeline --config examples/penguins/config.yaml --module transforms.penguins_sklearn \\
        --output_dir runs/penguins_sklearn --serving_dir serving/penguins_sklearn
"""
from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from beam_ml.model.estimators import export_sklearn
from beam_ml.train.trainer import FnArgs
from transforms.penguins import CATEGORICAL, preprocessing_fn  # noqa: F401 (the job calls it from this module)

FRAMEWORK = "sklearn"


def run_fn(fn_args: FnArgs) -> dict[str, float]:
    hp = fn_args.hyperparameters
    x, y = fn_args.arrays(fn_args.train_files)
    categorical = [fn_args.feature_names.index(name) for name in CATEGORICAL]
    model = Pipeline([
        ("encode", ColumnTransformer([("one_hot", OneHotEncoder(handle_unknown="ignore"), categorical)],
                                     remainder="passthrough")),
        ("classify", LogisticRegression(C=float(hp.get("C", 1.0)), max_iter=1000)),
    ]).fit(x, y)
    export_sklearn(model, fn_args)
    x_eval, y_eval = fn_args.arrays(fn_args.eval_files)
    return {"accuracy": float(model.score(x_eval, y_eval))}
