"""The streaming detection job's options (`DetectConfig`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

from beam_ml.config.base import (
    BIGQUERY_TABLE_REGEX, MODEL_STORE_DEFAULT, RUN_ID_REGEX, JobConfig, metadata_password_env_option,
    metadata_store_option, option)
from beam_ml.core.errors import ConfigError

# A Google Cloud project id, as Beam's Pub/Sub IO checks it when the pipeline starts: checked at launch instead.
PUBSUB_PROJECT = r"[a-z][-a-z0-9:.]{4,61}[a-z0-9]"
PUBSUB_TOPIC_REGEX = rf"^projects/{PUBSUB_PROJECT}/topics/[^/\s]+$"
PUBSUB_SUBSCRIPTION_REGEX = rf"^projects/{PUBSUB_PROJECT}/subscriptions/[^/\s]+$"
DETECTORS = ("model", "context", "pca", "zscore", "robust_zscore", "iqr")
_DETECTOR = "(" + "|".join(DETECTORS) + r")(:[0-9]+(\.[0-9]+)?)?"
DETECTOR_REGEX = f"^{_DETECTOR}(,{_DETECTOR})*$"


@dataclasses.dataclass(frozen=True)
class DetectConfig(JobConfig):
    """The streaming anomaly detection job: where telemetry comes from, what scores it, where alerts go."""

    subscription: str = option(None, required=True, regex=PUBSUB_SUBSCRIPTION_REGEX,
                               help="Pub/Sub subscription with the telemetry, projects/<p>/subscriptions/<s>: one "
                                    'JSON object per message, {"sensor_id": ..., "timestamp": unix seconds or ISO '
                                    "8601, <channel>: number, ...}. Event time is the message's timestamp.")
    detector: str = option("model", regex=DETECTOR_REGEX,
                           help="What scores each window: model (the pushed window model, see serving_dir), context "
                                "(beam_ml's online detector: sequence memory, time-of-day profile, anomaly "
                                "likelihood), pca (PCA T²+Q over all channels, fitted on each sensor's first 400 "
                                "readings), or Beam's online detectors zscore, robust_zscore, iqr (one per channel, "
                                "apache_beam.ml.anomaly). Several, comma-separated, are an ensemble that votes (see "
                                "vote). An online detector may carry its alert threshold, e.g. zscore:4 (defaults: "
                                "context 0.5, pca 1, zscore and robust_zscore 3, iqr 1.5).")
    vote: str = option("any", kind="choice", regex=r"^(any|majority|all)$",
                       help="How an ensemble's verdicts on a window make an alert: any member alerting, a majority, "
                            "or all of them.")
    channels: Optional[str] = option(None, regex=r"^[A-Za-z_][A-Za-z0-9_]*(,[A-Za-z_][A-Za-z0-9_]*)*$",
                                     help="The telemetry's channels, comma-separated, when no model is among the "
                                          "detectors (a model brings its own channels and windows); each reading is "
                                          "then scored as it is released, in event-time order.")
    sensor_ranges: Optional[str] = option(None, regex=r"^\S+$",
                                          help="JSON file of sensors' known value ranges for the context detector, "
                                               '{"<sensor_id>": {"<channel>": [low, high], ...}, ...} (e.g. from '
                                               "datasheets): a channel given its range is scored from its first "
                                               "reading; others learn their range from their first 150 readings.")
    serving_dir: Optional[str] = option(None, regex=r"^\S+$",
                                        help="TF Serving base directory of a window model (trained with "
                                             "--window_key), for the model detector: the newest version scores, and "
                                             "a newly pushed one is picked up without a restart.")
    output_dir: str = option(None, required=True, regex=r"^\S+$",
                             help="Base directory for run records; this run's goes to <output_dir>/<run_id>/.")
    run_id: Optional[str] = option(None, regex=RUN_ID_REGEX,
                                   help="Run id (default: UTC timestamp plus a short random suffix).")
    allowed_lateness: float = option(60.0, kind="float", regex=r"^[0-9.]+$",
                                     help="Seconds a reading may arrive after the watermark passed it and still be "
                                          "put in order; later ones go to the dead-letter sink as late, counted.")
    release_every: float = option(0.0, kind="float", regex=r"^[0-9.]+$",
                                  help="Seconds of event time over which a sensor's readings are released to windows "
                                       "together (one timer per span instead of per reading; 0: per reading). Adds "
                                       "up to this much latency, and readings more than allowed_lateness behind the "
                                       "watermark within a span count as late.")
    model_poll_seconds: float = option(10.0, kind="float", regex=r"^[0-9.]+$",
                                       help="How often (seconds) scoring looks for a newly pushed model version.")
    alerts_topic: Optional[str] = option(None, regex=PUBSUB_TOPIC_REGEX,
                                         help="Pub/Sub topic for alerts (JSON per alert), projects/<p>/topics/<t>.")
    alerts_table: Optional[str] = option(None, regex=BIGQUERY_TABLE_REGEX,
                                         help="BigQuery table for alerts (project:dataset.table), streaming inserts.")
    alerts_dir: Optional[str] = option(None, regex=r"^\S+$",
                                       help="Directory for alert files (JSON Lines per file_window of event time).")
    dead_letter_topic: Optional[str] = option(None, regex=PUBSUB_TOPIC_REGEX,
                                              help="Pub/Sub topic for dead letters: malformed, invalid and late "
                                                   "messages with the reason (JSON).")
    dead_letter_dir: Optional[str] = option(None, regex=r"^\S+$",
                                            help="Directory for dead-letter files (JSON Lines per file_window).")
    incidents_topic: Optional[str] = option(None, regex=PUBSUB_TOPIC_REGEX,
                                            help="Pub/Sub topic for incidents: a sensor's run of alerts as open, "
                                                 "update and close events (JSON), projects/<p>/topics/<t>.")
    incidents_dir: Optional[str] = option(None, regex=r"^\S+$",
                                          help="Directory for incident files (JSON Lines per file_window).")
    incident_gap: float = option(300.0, kind="float", regex=r"^[0-9.]+$",
                                 help="Seconds of event time without an alert after which a sensor's incident "
                                      "closes; alerts closer together are one incident. The close is sent once the "
                                      "watermark is past it by allowed_lateness plus 60 s (a late alert still joins).")
    incident_update_every: float = option(60.0, kind="float", regex=r"^[0-9.]+$",
                                          help="At most one update of an incident (a higher peak) per this many "
                                               "seconds of event time.")
    file_window: float = option(60.0, kind="float", regex=r"^[0-9.]+$",
                                help="Seconds of event time per alert, incident and dead-letter file.")
    metadata_store: Optional[str] = metadata_store_option(MODEL_STORE_DEFAULT)
    metadata_password_env: str = metadata_password_env_option()

    def detectors(self) -> list[tuple[str, Optional[float]]]:
        """The detector option as (name, threshold or None) pairs, in the order given."""
        return [(name, float(threshold) if threshold else None)
                for name, _, threshold in (member.partition(":") for member in self.detector.split(","))]

    def validate(self) -> None:
        super().validate()
        if not (self.alerts_topic or self.alerts_table or self.alerts_dir):
            raise ConfigError("alerts_topic", "give at least one of --alerts_topic, --alerts_table, --alerts_dir")
        if not (self.dead_letter_topic or self.dead_letter_dir):
            raise ConfigError("dead_letter_topic", "give --dead_letter_topic and/or --dead_letter_dir: invalid "
                                                   "messages are kept, never dropped")
        members = self.detectors()
        names = [name for name, _ in members]
        if len(set(names)) < len(names):
            raise ConfigError("detector", f"names a detector twice: {self.detector}")
        if ("model", None) not in members and "model" in names:
            raise ConfigError("detector", "the model's threshold is calibrated in training and travels with it; "
                                          "give model without one")
        if "model" in names:
            if not self.serving_dir:
                raise ConfigError("serving_dir", "is required when the detector includes model")
            if self.channels:
                raise ConfigError("channels", "come from the model when the detector includes model; leave it out")
        else:
            if not self.channels:
                raise ConfigError("channels", "is required when no model is among the detectors")
            if self.serving_dir:
                raise ConfigError("serving_dir", "is only read by the model detector, which --detector leaves out")
        if self.sensor_ranges and "context" not in names:
            raise ConfigError("sensor_ranges", "is read by the context detector only: add context to --detector")
        if len(members) == 1 and not self.is_default("vote"):
            raise ConfigError("vote", "applies to an ensemble: give --detector several detectors")
        for name in ("allowed_lateness", "release_every", "model_poll_seconds", "file_window", "incident_gap",
                     "incident_update_every"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (value == 0 and name == "file_window"):
                raise ConfigError(name, f"must be a {'positive' if name == 'file_window' else 'non-negative'} "
                                        f"number of seconds, got {value}")
