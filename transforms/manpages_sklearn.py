"""Manual-page descriptions (examples/text) with scikit-learn: the TF-IDF features of `transforms.manpages`, a
multinomial logistic regression on them."""
from __future__ import annotations

from sklearn.linear_model import LogisticRegression

from beam_ml.model.estimators import export_sklearn
from beam_ml.train.trainer import FnArgs
from transforms.manpages import preprocessing_fn  # noqa: F401 (the job calls it from this module)

FRAMEWORK = "sklearn"


def run_fn(fn_args: FnArgs) -> dict[str, float]:
    x, y = fn_args.arrays(fn_args.train_files)
    model = LogisticRegression(C=float(fn_args.hyperparameters.get("C", 10.0)), max_iter=2000).fit(x, y)
    export_sklearn(model, fn_args)
    x_eval, y_eval = fn_args.arrays(fn_args.eval_files)
    return {"accuracy": float(model.score(x_eval, y_eval))}
