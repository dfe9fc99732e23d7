"""Flex Template metadata generated from the job options (one source of truth).

    python -m beam_ml.templates   # rewrites templates/*/metadata.json
"""
from __future__ import annotations

import json
import os
from typing import Any

from beam_ml.config import config_fields

TEMPLATES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "templates")
REQUIRED_NOTE = " Required unless set in the --config file."


def train_pipeline_metadata() -> dict[str, Any]:
    parameters = [{"name": "config", "label": "Config file",
                   "helpText": "YAML config file (local path or gs://); parameters override its values.",
                   "isOptional": True, "regexes": [r"^\S+\.ya?ml$"]}]
    for field in config_fields():
        parameter = {"name": field.name, "label": field.name.replace("_", " ").capitalize(),
                     "helpText": field.metadata["help"] + (REQUIRED_NOTE if field.metadata["required"] else ""),
                     # Every value may come from the config file instead, so none is mandatory here.
                     "isOptional": True}
        if field.metadata["regex"]:
            parameter["regexes"] = [field.metadata["regex"]]
        parameters.append(parameter)
    return {"name": "beam_ml train pipeline",
            "description": "Ingest, validate (TFDV), transform (tf.Transform), train (tf_keras), evaluate (TFMA) "
                           "and push a TF Serving model, as one Beam job.",
            "streaming": False,
            "parameters": parameters}


def write_all() -> list[str]:
    path = os.path.join(TEMPLATES_DIR, "train_pipeline", "metadata.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(train_pipeline_metadata(), f, indent=2)
        f.write("\n")
    return [path]


if __name__ == "__main__":
    print("\n".join(write_all()))
