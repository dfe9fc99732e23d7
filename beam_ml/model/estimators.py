"""scikit-learn and XGBoost models beside the tf.Transform graph they were trained after: how `run_fn` exports one
(`export_sklearn`, `export_xgboost`) and how evaluation, infra validation, batch prediction and `beam_ml.serve` load
one and predict (`EstimatorModel`).

Such a model directory holds:
  * `model.joblib` (a fitted scikit-learn estimator or pipeline, dumped with joblib) or `model.bst` (an XGBoost
    Booster in UBJSON): what Vertex AI's prebuilt scikit-learn and XGBoost containers load, given rows of
    transformed features in `features` order. Written last: the directory is complete once it exists;
  * `transform_fn/`, `transformed_metadata/` and `metadata/`: the tf.Transform output the model was trained on
    (`tft.TFTransformOutput(model_dir)` reads it), so that serving transforms exactly as training did;
  * `assets.extra/beam_ml_model.json` (`MODEL_INFO`): {framework, label, features: [[name, width], ...]}: the
    transformed features, each `width` values wide, whose values side by side are a row of the model's input;
  * `assets.extra/raw_schema.pbtxt` and `labels.json`, as a TensorFlow model has.

What a model answers (`EstimatorModel.scores`), as a TensorFlow model's `outputs`: a classifier's class probabilities
in label-index order (a binary classifier's probability of class 1 alone, one column), a regressor's prediction.

Example (in `run_fn`)::

    x, y = fn_args.arrays(fn_args.train_files)
    model = sklearn.linear_model.LogisticRegression().fit(x, y)
    export_sklearn(model, fn_args)
"""
from __future__ import annotations

import functools
import io
import json
import os
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from beam_ml.core import fileutil
from beam_ml.model.artifact import MODEL_FILES, MODEL_INFO, SKLEARN, TENSORFLOW, XGBOOST, model_framework

TRANSFORM_DIRS = ("transform_fn", "transformed_metadata", "metadata")


class ExportArgs(Protocol):
    """What an export needs of `run_fn`'s `fn_args` (`beam_ml.train.trainer.FnArgs`)."""

    transform_output: str
    serving_model_dir: str
    label: str


def feature_layout(tf_transform_output: Any, label: str) -> list[tuple[str, int]]:
    """[(transformed feature, width)] in the order of the model's input columns: every transformed feature but the
    label, sorted by name. ValueError for a feature without a fixed number of values per row."""
    import tensorflow as tf
    layout = []
    for name, spec in sorted(tf_transform_output.transformed_feature_spec().items()):
        if name == label:
            continue
        if not isinstance(spec, tf.io.FixedLenFeature):
            raise ValueError(f"transformed feature {name!r} has a varying number of values per row; a scikit-learn "
                             f"or XGBoost model needs a fixed number (make preprocessing_fn return it dense, e.g. "
                             f"tft.sparse_tensor_to_dense_with_shape)")
        layout.append((name, int(np.prod(spec.shape)) if spec.shape else 1))
    return layout


def feature_names(layout: Sequence[tuple[str, int]]) -> list[str]:
    """One name per input column: the feature's, or `name[i]` for each value of a wider feature."""
    return [name if width == 1 else f"{name}[{i}]" for name, width in layout for i in range(width)]


def feature_matrix(features: Mapping[str, Any], layout: Sequence[tuple[str, int]]) -> np.ndarray:
    """The model's input: the transformed features side by side as one float32 matrix [rows, columns]."""
    rows = len(np.asarray(features[layout[0][0]])) if layout else 0
    return np.concatenate([np.asarray(features[name], dtype=np.float32).reshape(rows, width)
                           for name, width in layout], axis=1) if layout else np.zeros((rows, 0), np.float32)


def read_transformed(files: Sequence[str], tf_transform_output: Any, batch_size: int = 4096) -> dict[str, np.ndarray]:
    """Every transformed example in `files` (in file order) as {feature: array [rows, ...]}."""
    import tensorflow as tf
    spec = tf_transform_output.transformed_feature_spec()
    parts: dict[str, list] = {name: [] for name in spec}
    dataset = tf.data.TFRecordDataset(sorted(files)).batch(batch_size).map(lambda r: tf.io.parse_example(r, spec))
    for batch in dataset:
        for name, values in batch.items():
            parts[name].append(_dense(values))
    return {name: np.concatenate(values) if values else np.zeros((0,)) for name, values in parts.items()}


def _dense(values: Any) -> np.ndarray:
    import tensorflow as tf
    if isinstance(values, tf.SparseTensor):
        values = tf.sparse.to_dense(values)
    elif isinstance(values, tf.RaggedTensor):
        values = values.to_tensor()
    return values.numpy()


def _write_common(fn_args: ExportArgs, framework: str) -> None:
    """Everything but the model file: the transform output, the raw schema and the model info."""
    import tensorflow_transform as tft

    from beam_ml.model.export import write_raw_schema
    path = fn_args.serving_model_dir
    for name in TRANSFORM_DIRS:
        fileutil.copy_tree(os.path.join(fn_args.transform_output, name), os.path.join(path, name))
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    write_raw_schema(tf_transform_output, path)
    info = {"framework": framework, "label": fn_args.label,
            "features": [list(item) for item in feature_layout(tf_transform_output, fn_args.label)]}
    fileutil.write_json(os.path.join(path, MODEL_INFO), info)


def export_sklearn(model: Any, fn_args: ExportArgs) -> None:
    """Exports a fitted scikit-learn estimator or pipeline to `fn_args.serving_model_dir` (see the module docstring).
    A classifier's classes must be the label indices 0..k-1 (what `fn_args.arrays` gives as `y`)."""
    import joblib
    classes = getattr(model, "classes_", None)
    if classes is not None and list(classes) != list(range(len(classes))):
        raise ValueError(f"the classifier's classes are {list(classes)[:10]}, not the label indices "
                         f"0..{len(classes) - 1}: fit it on the transformed label (fn_args.arrays), on every class")
    _write_common(fn_args, SKLEARN)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    fileutil.write_bytes(os.path.join(fn_args.serving_model_dir, MODEL_FILES[SKLEARN]), buffer.getvalue())


def export_xgboost(model: Any, fn_args: ExportArgs) -> None:
    """Exports a trained XGBoost model (a `xgboost.Booster`, or a scikit-learn-style `XGBClassifier`/`XGBRegressor`,
    whose booster is saved) to `fn_args.serving_model_dir` (see the module docstring)."""
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    _write_common(fn_args, XGBOOST)
    fileutil.write_bytes(os.path.join(fn_args.serving_model_dir, MODEL_FILES[XGBOOST]),
                         bytes(booster.save_raw(raw_format="ubj")))


def read_model_info(model_dir: str) -> dict:
    return json.loads(fileutil.read_text(os.path.join(model_dir, MODEL_INFO)))


def load_estimator(model_dir: str, framework: str) -> Any:
    """The fitted scikit-learn estimator, or the XGBoost Booster, of a model directory."""
    data = fileutil.read_bytes(os.path.join(model_dir, MODEL_FILES[framework]))
    if framework == SKLEARN:
        import joblib
        return joblib.load(io.BytesIO(data))
    import xgboost
    booster = xgboost.Booster()
    booster.load_model(bytearray(data))
    return booster


def estimator_scores(model: Any, framework: str, x: np.ndarray) -> np.ndarray:
    """What the model answers for the input rows `x`, as float32 [rows, outputs] (see the module docstring)."""
    if framework == XGBOOST:
        import xgboost
        scores = model.predict(xgboost.DMatrix(x))
    elif hasattr(model, "predict_proba"):
        scores = model.predict_proba(x)
        if scores.shape[1] == 2:  # binary: the probability of class 1, as a one-unit sigmoid model outputs
            scores = scores[:, 1:]
    else:
        scores = model.predict(x)
    return np.asarray(scores, dtype=np.float32).reshape(len(x), -1)


class EstimatorModel:
    """A scikit-learn or XGBoost model directory, loaded: raw serialized tf.Examples → the transform graph → the
    model's input → its scores.

    Example::

        model = EstimatorModel("serving/penguins_sklearn/1796421956")
        probabilities = model.predict_examples(serialized_examples)
    """

    def __init__(self, model_dir: str):
        import tensorflow_transform as tft
        self.model_dir = model_dir
        self.framework = model_framework(model_dir)
        if self.framework in (None, TENSORFLOW):
            raise ValueError(f"{model_dir} holds no scikit-learn or XGBoost model")
        info = read_model_info(model_dir)
        self.label: str = info["label"]
        self.layout = [(name, int(width)) for name, width in info["features"]]
        self._transform_output = tft.TFTransformOutput(model_dir)
        self._layer = self._transform_output.transform_features_layer()
        raw_spec = self._transform_output.raw_feature_spec()
        self._specs = {True: raw_spec, False: {k: v for k, v in raw_spec.items() if k != self.label}}

    @functools.cached_property
    def model(self) -> Any:
        """The fitted estimator or Booster, loaded when first used (transforming alone does not need it)."""
        return load_estimator(self.model_dir, self.framework)

    def transform_examples(self, examples: Sequence[bytes], with_label: bool = False) -> dict[str, np.ndarray]:
        """The transformed features (and the transformed label, `with_label`) of raw serialized tf.Examples."""
        import tensorflow as tf
        if not examples:
            return {}
        transformed = self._layer(tf.io.parse_example(tf.constant(list(examples)), self._specs[with_label]))
        return {name: _dense(values) for name, values in transformed.items()}

    def matrix(self, transformed: Mapping[str, Any]) -> np.ndarray:
        return feature_matrix(transformed, self.layout)

    def scores(self, x: np.ndarray) -> np.ndarray:
        return estimator_scores(self.model, self.framework, x)

    def transformed_label(self, examples: Sequence[bytes]) -> np.ndarray:
        """The transformed label of raw serialized tf.Examples that have one, [rows]."""
        return self.transform_examples(examples, with_label=True)[self.label].reshape(len(examples))

    def label_and_scores(self, examples: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(transformed label [rows], scores [rows, outputs]) of labelled raw serialized tf.Examples, transformed
        once."""
        transformed = self.transform_examples(examples, with_label=True)
        return transformed[self.label].reshape(len(examples)), self.scores(self.matrix(transformed))

    def predict_examples(self, examples: Sequence[bytes]) -> np.ndarray:
        """Scores [rows, outputs] of raw serialized tf.Examples (a label in them is ignored)."""
        if not examples:
            return np.zeros((0, 0), np.float32)
        return self.scores(self.matrix(self.transform_examples(examples)))


class SavedModelScorer:
    """A TensorFlow model directory, loaded: raw serialized tf.Examples → its `serving_default` outputs, as
    `EstimatorModel.predict_examples` answers."""

    def __init__(self, model_dir: str):
        import tensorflow as tf
        self.model_dir = model_dir
        self._loaded = tf.saved_model.load(model_dir)  # kept: its signatures need it alive

    def transformed_label(self, examples: Sequence[bytes]) -> np.ndarray:
        """The transformed label of raw serialized tf.Examples that have one, [rows]."""
        import tensorflow as tf

        from beam_ml.model.artifact import TRANSFORMED_LABEL_SIGNATURE
        signature = self._loaded.signatures[TRANSFORMED_LABEL_SIGNATURE]
        (label,) = signature(examples=tf.constant(list(examples))).values()
        return _dense(label).reshape(len(examples))

    def label_and_scores(self, examples: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(transformed label [rows], scores [rows, outputs]) of labelled raw serialized tf.Examples."""
        return self.transformed_label(examples), self.predict_examples(examples)

    def predict_examples(self, examples: Sequence[bytes]) -> np.ndarray:
        import tensorflow as tf

        from beam_ml.model.artifact import OUTPUT_KEY, SERVING_SIGNATURE
        if not examples:
            return np.zeros((0, 0), np.float32)
        outputs = self._loaded.signatures[SERVING_SIGNATURE](examples=tf.constant(list(examples)))[OUTPUT_KEY]
        return np.asarray(outputs.numpy(), dtype=np.float32).reshape(len(examples), -1)


def load_scorer(model_dir: str) -> EstimatorModel | SavedModelScorer:
    """A model directory of any framework, loaded to score raw serialized tf.Examples."""
    return SavedModelScorer(model_dir) if model_framework(model_dir) == TENSORFLOW else EstimatorModel(model_dir)
