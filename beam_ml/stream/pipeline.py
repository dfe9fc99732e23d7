"""The streaming detection job as one composite PTransform: Pub/Sub telemetry → per-sensor event-time windows →
verdicts from the newest pushed window model and/or online detectors (an ensemble votes) → alerts (and incidents:
a sensor's run of alerts, `beam_ml.stream.incidents`); invalid, late and duplicate messages → dead letters (so every
message is in a window or a dead letter, and the report counts them).

Step names are static: Dataflow's in-place update (`--update`) matches steps by name, so a new model version needs
no new job, and a new job version keeps its state (a test keeps every step name of the Dataflow translation as it
was).
"""
from __future__ import annotations

import json
from typing import NamedTuple, Optional

import apache_beam as beam

from beam_ml.core.deadletter import DeadLetter
from beam_ml.core.windowing import Reading, SensorWindow
from beam_ml.stream.elements import Alert, ScoredWindow
from beam_ml.stream.incidents import GroupIncidents, WriteIncidents
from beam_ml.stream.model_scoring import ScoreWithModel
from beam_ml.stream.online_scoring import ScoreWindows
from beam_ml.stream.order import WindowPerSensor
from beam_ml.stream.parse import ParseTelemetry
from beam_ml.stream.plan import DetectPlan
from beam_ml.stream.sinks import WriteAlerts, WriteStreamingDeadLetters
from beam_ml.stream.verdicts import ToAlerts, Vote

# How long after the watermark passed an alert's or dead letter's file window it is still written (a later pane: a
# new file), and an incident stays open for a late alert. Scoring takes time, and the local runner's watermark does
# not wait for timer output.
SINK_LATENESS_MARGIN = 60.0


class Detections(NamedTuple):
    """What `DetectAnomalies` gives (for tests and benchmarks to tap); the job itself writes alerts and dead
    letters to their sinks."""

    readings: beam.PCollection[tuple[str, Reading]]
    windows: beam.PCollection[SensorWindow]
    verdicts: beam.PCollection[ScoredWindow]
    alerts: beam.PCollection[Alert]
    dead_letter: beam.PCollection[DeadLetter]


def _reading_json(reading: Reading) -> str:
    return json.dumps({"sensor_id": reading.sensor_id, "timestamp": reading.timestamp, "values": reading.values})


def late_dead_letter(reading: Reading, source: str, allowed_lateness: float) -> DeadLetter:
    return DeadLetter(source, 0, _reading_json(reading),
                      f"late: sensor {reading.sensor_id} was already released past event time {reading.timestamp} "
                      f"(allowed lateness {allowed_lateness} s)")


def duplicate_dead_letter(reading: Reading, source: str) -> DeadLetter:
    return DeadLetter(source, 0, _reading_json(reading),
                      f"duplicate: sensor {reading.sensor_id} already has a reading at event time {reading.timestamp} "
                      f"(the first one is kept)")


class DetectAnomalies(beam.PTransform[beam.pvalue.PBegin, Detections]):
    """The whole streaming job (see the module docstring).

    Example::

        plan = plan_detect(DetectConfig.load("detect.yaml", {}))
        with beam.Pipeline(options=streaming_options) as p:
            out = p | DetectAnomalies(plan)
    """

    def __init__(self, plan: DetectPlan, source: Optional[beam.PTransform] = None):
        """`source`: instead of the subscription, a PTransform from the pipeline's start to messages with
        `data` and `attributes` (tests replay a TestStream through it)."""
        super().__init__()
        self._plan = plan
        self._source = source

    def expand(self, pbegin: beam.pvalue.PBegin) -> Detections:
        plan = self._plan
        config, spec, lateness = plan.config, plan.spec, plan.config.allowed_lateness
        messages = pbegin | "ReadTelemetry" >> (self._source or beam.io.ReadFromPubSub(
            subscription=config.subscription, with_attributes=True))
        parsed = messages | "Parse" >> ParseTelemetry(plan.channels, source=config.subscription)
        windowed = parsed.readings | "Windows" >> WindowPerSensor(spec.length, spec.stride, lateness, spec.max_gap,
                                                                  config.release_every)
        verdicts = []
        if plan.model_dir:
            verdicts.append(windowed.windows | "Score" >> ScoreWithModel(config.serving_dir,
                                                                         poll_seconds=config.model_poll_seconds))
        if plan.online:
            verdicts.append(windowed.windows | "ScoreOnline" >> ScoreWindows(plan.online, plan.channels))
        if plan.members > 1:
            verdicts = [tuple(verdicts) | "Vote" >> Vote(plan.members, config.vote)]
        alerts = verdicts[0] | "Alerts" >> ToAlerts(top=len(plan.channels))
        sink_lateness = lateness + SINK_LATENESS_MARGIN
        written = alerts | "WriteAlerts" >> WriteAlerts(config.alerts_topic, config.alerts_table, config.alerts_dir,
                                                        file_window=config.file_window, allowed_lateness=sink_lateness)
        if config.incidents_topic or config.incidents_dir:
            _ = (alerts | "Incidents" >> GroupIncidents(config.incident_gap, config.incident_update_every,
                                                        sink_lateness)
                 | "WriteIncidents" >> WriteIncidents(config.incidents_topic, config.incidents_dir,
                                                      config.file_window, sink_lateness))
        late = windowed.late | "LateToDeadLetters" >> beam.Map(late_dead_letter, config.subscription, lateness)
        duplicates = windowed.duplicates | "DuplicatesToDeadLetters" >> beam.Map(duplicate_dead_letter,
                                                                                 config.subscription)
        dead_letters = ((parsed.dead_letter, late, duplicates, *written.dead_letters)
                        | "AllDeadLetters" >> beam.Flatten())
        _ = dead_letters | "WriteDeadLetters" >> WriteStreamingDeadLetters(
            config.dead_letter_topic, config.dead_letter_dir, config.file_window, sink_lateness)
        return Detections(parsed.readings, windowed.windows, verdicts[0], alerts, dead_letters)
