"""Flex Template metadata generated from the jobs' config classes (one source of truth).

    python -m beam_ml.launch.templates   # rewrites templates/<job>/metadata.json
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from beam_ml.config.base import JobConfig
from beam_ml.config.detect import DetectConfig
from beam_ml.config.predict import PredictConfig
from beam_ml.config.train import PipelineConfig

TEMPLATES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "templates")
REQUIRED_NOTE = " Required unless set in the --config file."


@dataclasses.dataclass(frozen=True)
class JobTemplate:
    """A job launched as a Flex Template: `jobs/<job>.py` with the flags of `config`."""

    job: str
    config: type[JobConfig]
    name: str
    description: str
    streaming: bool = False


JOBS = (
    JobTemplate("train_pipeline", PipelineConfig, "beam_ml train pipeline",
                "Ingest, validate (TFDV), transform (tf.Transform), train (tf_keras), evaluate (TFMA) and push a "
                "TF Serving model, as one Beam job."),
    JobTemplate("batch_predict", PredictConfig, "beam_ml batch prediction",
                "Predict with a pushed model (Beam RunInference on its serialized tf.Example signature) and write "
                "the predictions with each row's key."),
    JobTemplate("detect_anomalies", DetectConfig, "beam_ml streaming anomaly detection",
                "Read sensor telemetry from Pub/Sub, order each sensor's readings by event time into windows, score "
                "them with the newest pushed window model (RunInference, reloaded when a new version is pushed) "
                "and/or online detectors (Beam's ZScore, RobustZScore, IQR; beam_ml's context detector), voting "
                "as an ensemble, and write alerts to Pub/Sub, BigQuery and/or files; invalid and late messages go "
                "to a dead-letter sink.",
                streaming=True),
)


def metadata(template: JobTemplate) -> dict[str, Any]:
    parameters = [{"name": "config", "label": "Config file",
                   "helpText": "YAML config file (local path or gs://); parameters override its values.",
                   "isOptional": True, "regexes": [r"^\S+\.ya?ml$"]}]
    for field in template.config.fields():
        parameter = {"name": field.name, "label": field.name.replace("_", " ").capitalize(),
                     "helpText": field.metadata["help"] + (REQUIRED_NOTE if field.metadata["required"] else ""),
                     # Every value may come from the config file instead, so none is mandatory here.
                     "isOptional": True}
        if field.metadata["regex"]:
            parameter["regexes"] = [field.metadata["regex"]]
        parameters.append(parameter)
    return {"name": template.name, "description": template.description, "streaming": template.streaming,
            "parameters": parameters}


def metadata_path(job: str) -> str:
    return os.path.join(TEMPLATES_DIR, job, "metadata.json")


def write_all() -> list[str]:
    paths = []
    for template in JOBS:
        path = metadata_path(template.job)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(metadata(template), f, indent=2)
            f.write("\n")
        paths.append(path)
    return paths


if __name__ == "__main__":
    print("\n".join(write_all()))
