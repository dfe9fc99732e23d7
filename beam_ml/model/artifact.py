"""What a model directory holds: the one place that spells out its signatures, asset paths and files.

A model is a TensorFlow SavedModel, or a scikit-learn or XGBoost model beside the tf.Transform graph it was trained
after (`beam_ml.model.estimators` describes that layout; `model_framework` tells which). Each framework has a file
that is written last (`MODEL_FILES`): a directory is a complete model once that file exists.

A TensorFlow model is a SavedModel (`saved_model.pb`) with these signatures (`beam_ml.model.export` writes them):
  * `serving_default` (`SERVING_SIGNATURE`): serialized tf.Example (raw features, label optional) →
    `{"outputs": predictions}` (`OUTPUT_KEY`, what TFMA evaluates; a model with several named outputs returns them
    all);
  * `transform_features`: serialized tf.Example → the transformed features;
  * `transformed_label`: serialized tf.Example → {label: transformed label} (where TFMA reads the label);
  * `serving_raw`: one tensor per raw feature (shape [batch]) → `{"outputs": ...}`, for JSON REST clients.
Beside them, in `assets.extra/` (TF Serving ignores it): the raw schema (`raw_schema.pbtxt`: batch prediction parses
input columns with the types the model was trained on), the windowing of a window model (`windowing.json`: the
streaming job cuts windows as training did), the label record (`labels.json`: the label's values per split, the class
names in output order, the outputs' shape; `beam_ml.train.labels`) and, in a pushed version, the push record
(`beam_ml_push.json`).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional, Sequence

from beam_ml.core import fileutil
from beam_ml.core.records import TFMD_TYPES, RecordFormat
from beam_ml.core.windowing import SensorWindow, WindowSpec, windows_record_batch

SAVED_MODEL_FILE = "saved_model.pb"
TENSORFLOW, SKLEARN, XGBOOST = "tensorflow", "sklearn", "xgboost"
FRAMEWORKS = (TENSORFLOW, SKLEARN, XGBOOST)
MODEL_FILES = {TENSORFLOW: SAVED_MODEL_FILE, SKLEARN: "model.joblib", XGBOOST: "model.bst"}
SERVING_SIGNATURE = "serving_default"
TRANSFORM_FEATURES_SIGNATURE = "transform_features"
TRANSFORMED_LABEL_SIGNATURE = "transformed_label"
SERVING_RAW_SIGNATURE = "serving_raw"
OUTPUT_KEY = "outputs"
RAW_SCHEMA = os.path.join("assets.extra", "raw_schema.pbtxt")
WINDOWING_ASSET = os.path.join("assets.extra", "windowing.json")
PUSH_RECORD = os.path.join("assets.extra", "beam_ml_push.json")
LABELS_RECORD = os.path.join("assets.extra", "labels.json")
MODEL_INFO = os.path.join("assets.extra", "beam_ml_model.json")  # a scikit-learn or XGBoost model's features


def model_framework(model_dir: str) -> Optional[str]:
    """`TENSORFLOW`, `SKLEARN` or `XGBOOST`: the framework whose model file `model_dir` holds; None if none."""
    import tensorflow as tf
    return next((framework for framework, name in MODEL_FILES.items()
                 if tf.io.gfile.exists(os.path.join(model_dir, name))), None)


def is_model(model_dir: str) -> bool:
    """Whether `model_dir` holds a complete model of any framework."""
    return model_framework(model_dir) is not None


def is_saved_model(model_dir: str) -> bool:
    import tensorflow as tf
    return tf.io.gfile.exists(os.path.join(model_dir, SAVED_MODEL_FILE))


def raw_column_types(model_dir: str) -> Optional[dict[str, str]]:
    """{column: int|float|string} from the model's raw schema, or None for a model exported without one."""
    import tensorflow as tf
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    path = os.path.join(model_dir, RAW_SCHEMA)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    names = {tfmd: kind for kind, tfmd in TFMD_TYPES.items()}
    return {feature.name: names[feature.type] for feature in schema.feature if feature.type in names}


def signature_problems(model_dir: str) -> list[str]:
    """What the exported model lacks that evaluation (TFMA) and serving need: the `serving_default` signature with an
    `outputs` output, and `transformed_label`. Read from `saved_model.pb` without loading the model."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2
    saved = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(model_dir, SAVED_MODEL_FILE), "rb") as f:
        saved.ParseFromString(f.read())
    signatures = {name: sig for graph in saved.meta_graphs for name, sig in graph.signature_def.items()}
    problems = [f"no {name!r} signature" for name in (SERVING_SIGNATURE, TRANSFORMED_LABEL_SIGNATURE)
                if name not in signatures]
    if SERVING_SIGNATURE in signatures and OUTPUT_KEY not in signatures[SERVING_SIGNATURE].outputs:
        problems.append(f"{SERVING_SIGNATURE!r} has no {OUTPUT_KEY!r} output (it has "
                        f"{sorted(signatures[SERVING_SIGNATURE].outputs)})")
    return problems


def read_labels_record(model_dir: Optional[str]) -> Optional[dict]:
    """A model's label record, or None (no model, or one exported before the record existed)."""
    import tensorflow as tf
    if not model_dir or not tf.io.gfile.exists(os.path.join(model_dir, LABELS_RECORD)):
        return None
    return json.loads(fileutil.read_text(os.path.join(model_dir, LABELS_RECORD)))


def class_names(model_dir: str) -> Optional[tuple[str, ...]]:
    """The names of a classifier's outputs, in order (from its label record), or None."""
    record = read_labels_record(model_dir)
    classes = (record or {}).get("classes")
    return tuple(str(c) for c in classes) if classes else None


def predicted_class(scores: Sequence[float], classes: Optional[Sequence[str]]) -> Optional[str]:
    """The name of a classifier's highest output, or None when `scores` are not one per class name."""
    if not classes or not scores or len(scores) != len(classes):
        return None
    return classes[max(range(len(scores)), key=scores.__getitem__)]


def serving_features(signatures) -> Optional[tuple[str, ...]]:
    """The raw features a loaded model (`tf.saved_model.load(dir).signatures`) serves on: its `serving_raw`
    signature's inputs, the raw schema less the label; None for a model exported without that signature."""
    if SERVING_RAW_SIGNATURE not in signatures:
        return None
    return tuple(sorted(signatures[SERVING_RAW_SIGNATURE].structured_input_signature[1]))


def write_windowing(model_dir: str, windowing: dict) -> None:
    """Records how windows are cut (`WindowSpec.to_dict()` plus the label column) with a window model."""
    fileutil.write_json(os.path.join(model_dir, WINDOWING_ASSET), windowing)


@dataclasses.dataclass(frozen=True)
class WindowModelInfo:
    """What a window model says about its input: the raw format of a window record without the label, the
    windowing, and the channels (in the order a `SensorWindow`'s values hold them)."""

    fmt: RecordFormat
    spec: WindowSpec
    channels: tuple[str, ...]


def window_model_info(model_dir: str) -> WindowModelInfo:
    """Reads the windowing and raw schema a window model was exported with; ValueError if it is not one."""
    import tensorflow as tf
    path = os.path.join(model_dir, WINDOWING_ASSET)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{model_dir} is not a window model (no {WINDOWING_ASSET}; train with --window_key)")
    with tf.io.gfile.GFile(path) as f:
        windowing = json.load(f)
    types = raw_column_types(model_dir) or {}
    columns = tuple(c for c in types if c != windowing["label"])
    spec = WindowSpec.from_dict(windowing)
    fmt = RecordFormat(columns, tuple(types[c] for c in columns))
    return WindowModelInfo(fmt, spec, spec.value_columns(fmt))


def serialized_windows(windows: Sequence[SensorWindow], fmt: RecordFormat, spec: WindowSpec) -> list[bytes]:
    """Window records as serialized tf.Examples: what the serving signature of a window model takes."""
    from tfx_bsl.coders import example_coder
    return example_coder.RecordBatchToExamplesEncoder().encode(windows_record_batch(windows, fmt, spec))
