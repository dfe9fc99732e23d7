"""A pushed model served from any Python server (Flask, FastAPI, a Cloud Function): raw rows in, predictions out,
through the model's own transform graph, for a TensorFlow, scikit-learn or XGBoost model alike.

    from beam_ml.serve import Predictor
    predictor = Predictor.latest("serving/penguins_sklearn")   # or Predictor("serving/penguins_sklearn/1796468336")
    predictor.predict([{"island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": 14.2, "sex": "female",
                        "flipper_length_mm": 209.0, "body_mass_g": 4600.0, "year": 2008}])
    # [{"outputs": [0.01, 0.98, 0.01], "class": "Gentoo"}]   (as batch prediction writes them, without the key)

A missing or None value is a missing feature (the transform graph imputes it). For Vertex AI's prebuilt scikit-learn
and XGBoost containers, which load `model.joblib` / `model.bst` alone, `feature_rows` gives the instances to send:
the rows transformed as in training.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from beam_ml.core.fileutil import storage_path
from beam_ml.model.artifact import OUTPUT_KEY, class_names, predicted_class, raw_column_types
from beam_ml.model.estimators import EstimatorModel, load_scorer
from beam_ml.model.push import latest_model
from beam_ml.model.serving import serialized_examples


class Predictor:
    """A model directory (a pushed version, or a run's `model/serving`) loaded to answer raw rows."""

    def __init__(self, model_dir: str):
        self.model_dir = storage_path(model_dir)
        self._scorer = load_scorer(self.model_dir)
        self._types = raw_column_types(self.model_dir) or {}
        self.classes: Optional[tuple[str, ...]] = class_names(self.model_dir)

    @classmethod
    def latest(cls, serving_dir: str) -> "Predictor":
        """The newest version pushed to `serving_dir`; ValueError if there is none."""
        model_dir = latest_model(storage_path(serving_dir))
        if model_dir is None:
            raise ValueError(f"no model version has been pushed to {serving_dir}")
        return cls(model_dir)

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> list[dict]:
        """One answer per row: {"outputs": [scores]} and, for a classifier whose class names are known, "class"."""
        scores = self._scorer.predict_examples(serialized_examples(rows, self._types))
        answers = []
        for row_scores in scores.tolist():
            answer: dict = {OUTPUT_KEY: row_scores}
            name = predicted_class(row_scores, self.classes)
            if name is not None:
                answer["class"] = name
            answers.append(answer)
        return answers

    def feature_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The rows transformed as in training: the input a scikit-learn or XGBoost model file takes (float32
        [rows, columns]); ValueError for a TensorFlow model, whose SavedModel takes raw rows itself."""
        if not isinstance(self._scorer, EstimatorModel):
            raise ValueError(f"{self.model_dir} is a TensorFlow model: it transforms raw rows itself")
        return self._scorer.matrix(self._scorer.transform_examples(serialized_examples(rows, self._types)))
