"""The batch prediction job's options (`PredictConfig`).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from beam_ml.config.base import (
    BIGQUERY_TABLE_REGEX, COLUMN_NAME_REGEX, MODEL_STORE_DEFAULT, RUN_ID_REGEX, check_column_types,
    metadata_password_env_option, metadata_store_option, option)
from beam_ml.config.source import BATCH_BYTES_HELP, COLUMN_TYPES_HELP, SourceConfig
from beam_ml.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class PredictConfig(SourceConfig):
    """One batch prediction run: which data (the `SourceConfig` options), which model, where the predictions go."""

    ALTERNATIVES = (("serving_dir", "model_dir"),)

    key_column: str = option(None, required=True, regex=COLUMN_NAME_REGEX,
                             help="Column that identifies a row; each prediction is written with its value.")
    output_dir: str = option(None, required=True, regex=r"^\S+$",
                             help="Base directory for runs; predictions go to <output_dir>/<run_id>/predictions/.")
    serving_dir: Optional[str] = option(None, regex=r"^\S+$",
                                        help="TF Serving base directory: the newest version in it is used "
                                             "(give this or model_dir).")
    model_dir: Optional[str] = option(None, regex=r"^\S+$",
                                      help="A specific SavedModel directory, e.g. <serving_dir>/1732800000.")
    run_id: Optional[str] = option(None, regex=RUN_ID_REGEX,
                                   help="Run id (default: UTC timestamp plus a short random suffix).")
    column_types: dict = option({}, kind="json", help=COLUMN_TYPES_HELP + " The model's raw schema, when it has "
                                                                          "one, types its own features.")
    batch_bytes: int = option(8 << 20, kind="int", regex=r"^[0-9]+$", help=BATCH_BYTES_HELP)
    allow_missing_features: bool = option(False, kind="bool", regex=r"^(true|false|True|False)$",
                                          help="Predict even when the input lacks some of the model's features "
                                               "(its transform then imputes them, as for a missing value); by "
                                               "default such an input fails at launch, naming them.")
    bigquery_table: Optional[str] = option(None, regex=BIGQUERY_TABLE_REGEX,
                                           help="Also write the predictions to this BigQuery table "
                                                "(project:dataset.table); created if needed, rows appended.")
    bigquery_method: str = option("FILE_LOADS", kind="choice", regex=r"^(FILE_LOADS|STREAMING_INSERTS)$",
                                  help="How rows reach BigQuery: FILE_LOADS (load jobs from --temp_location) or "
                                       "STREAMING_INSERTS.")
    metadata_store: Optional[str] = metadata_store_option(MODEL_STORE_DEFAULT)
    metadata_password_env: str = metadata_password_env_option()

    def validate(self) -> None:
        super().validate()
        if not self.input:
            raise ConfigError("input", "is required")
        if bool(self.serving_dir) == bool(self.model_dir):
            raise ConfigError("serving_dir" if not self.model_dir else "model_dir",
                              "give exactly one of --serving_dir (newest version) and --model_dir")
        check_column_types(self.column_types)
