"""What the batch prediction job resolves before any work: the model (the newest version in `--serving_dir`, or
`--model_dir`), the input (files, a database, BigQuery) and its column types (from the model's raw schema, so rows
parse as in training), and the run; `plan_predict` fails with a `ConfigError` naming the option.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

from beam_ml.config.predict import PredictConfig
from beam_ml.core.errors import ConfigError
from beam_ml.core.fileutil import storage_path
from beam_ml.core.records import RecordFormat
from beam_ml.core.run import RunContext, RunManifest
from beam_ml.ingest.resolve import require_column, resolve_source
from beam_ml.ingest.source import Source
from beam_ml.lineage.store import resolve_store
from beam_ml.model.artifact import (
    OUTPUT_KEY, SERVING_SIGNATURE, TENSORFLOW, class_names, model_framework, raw_column_types, serving_features)
from beam_ml.model.push import latest_model, pushed_from


CLASS_COLUMN = "class"  # the predicted class's name, for a classifier whose class names are known


@dataclasses.dataclass(frozen=True)
class PredictPlan:
    config: PredictConfig
    run: RunContext
    model_dir: str
    source: Source
    bigquery_schema: Optional[dict] = None
    classes: Optional[tuple[str, ...]] = None
    pushed_from: Optional[str] = None  # the training run's model that model_dir, a pushed version, is a copy of
    framework: str = TENSORFLOW  # the model's (beam_ml.model.artifact.model_framework)

    @property
    def fmt(self) -> RecordFormat:
        return self.source.fmt

    @property
    def predictions_prefix(self) -> str:
        return os.path.join(self.run.run_dir, "predictions", "predictions")

    def manifest(self) -> RunManifest:
        return self.run.manifest(
            counts={"read": 0, "predicted": 0, "dead_letter": 0}, model_dir=self.model_dir,
            pushed_from=self.pushed_from, inputs=self.source.describe(),
            record_format={"columns": list(self.fmt.columns), "types": list(self.fmt.types)},
            predictions=self.predictions_prefix + "-*.jsonl", bigquery_table=self.config.bigquery_table)


def plan_predict(config: PredictConfig) -> PredictPlan:
    """Resolves the model, inputs and run directory; raises ConfigError naming the offending option."""
    import tensorflow as tf

    config = dataclasses.replace(config, **{name: storage_path(getattr(config, name))
                                            for name in ("output_dir", "serving_dir", "model_dir")})
    if config.model_dir:
        if model_framework(config.model_dir) is None:
            raise ConfigError("model_dir", f"no model at {config.model_dir} (no SavedModel, model.joblib or "
                                           f"model.bst)")
        model_dir = config.model_dir
    else:
        model_dir = latest_model(config.serving_dir)
        if model_dir is None:
            raise ConfigError("serving_dir", f"no model version has been pushed to {config.serving_dir}")
    source_model = pushed_from(model_dir)
    config = dataclasses.replace(config, metadata_store=resolve_store(
        config.metadata_store, config.metadata_password_env, config.output_dir, source_model or model_dir))
    # The model's schema also types the label, which unlabelled data does not have: entries for columns not in
    # the header are ignored.
    model_types = raw_column_types(model_dir) or {}
    source = resolve_source(config, {**model_types, **config.column_types}).source
    require_column(source.fmt, config.key_column, "key_column")
    framework = model_framework(model_dir)
    if framework == TENSORFLOW:
        signatures = tf.saved_model.load(model_dir).signatures
        features, outputs = serving_features(signatures), signatures[SERVING_SIGNATURE].structured_outputs
    else:  # the raw columns the transform graph reads, but the label
        from beam_ml.model.estimators import read_model_info
        label = read_model_info(model_dir)["label"]
        features = tuple(sorted(c for c in model_types if c != label))
        outputs = {OUTPUT_KEY: tf.TensorSpec([None, None], tf.float32)}
    missing = [f for f in features or () if f not in source.fmt.columns]
    if missing and not config.allow_missing_features:
        raise ConfigError("input", f"lacks the model's features {missing} (its columns: "
                                   f"{', '.join(source.fmt.columns)}); give --allow_missing_features true to predict "
                                   f"with them missing (the model's transform imputes them)")
    run = RunContext.start("batch_predict", config.output_dir, config.run_id, config.to_dict())
    classes = class_names(model_dir)
    return PredictPlan(config=config, run=run, model_dir=model_dir, source=source, classes=classes,
                       bigquery_schema=bigquery_schema(outputs, classes) if config.bigquery_table else None,
                       pushed_from=source_model, framework=framework)


def bigquery_schema(outputs: dict, classes: Optional[Sequence[str]] = None) -> dict:
    """`key:STRING` plus one REPEATED column per output of a model (its serving signature's
    `structured_outputs`: {name: TensorSpec}) and `class:STRING` for a classifier whose class names are known, as a
    TableSchema dict."""
    import tensorflow as tf

    kinds = {tf.string: "STRING", tf.bool: "BOOLEAN"}
    fields = [{"name": "key", "type": "STRING", "mode": "REQUIRED"}]
    for name, spec in sorted(outputs.items()):
        kind = kinds.get(spec.dtype, "INTEGER" if spec.dtype.is_integer else "FLOAT")
        fields.append({"name": name, "type": kind, "mode": "REPEATED"})
    if classes and CLASS_COLUMN not in outputs:  # a model's own `class` output wins
        fields.append({"name": CLASS_COLUMN, "type": "STRING", "mode": "NULLABLE"})
    return {"fields": fields}
