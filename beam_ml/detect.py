"""The streaming detection job as one composite PTransform: Pub/Sub telemetry → per-sensor event-time windows →
verdicts from the newest pushed window model and/or online detectors (an ensemble votes) → alerts; invalid and late
messages → dead letters.

`plan_detect` resolves what must be known at launch (the model pushed now, its channels and windowing, the online
detectors) and fails with a ConfigError naming the option before anything starts. Step names are static: Dataflow's in-place update
(`--update`) matches steps by name, so a new model version needs no new job, and a new job version keeps its state.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Optional

import apache_beam as beam

from beam_ml.alerts import DEAD_LETTER, WriteAlerts, WriteJsonLinesFiles
from beam_ml.config import ConfigError, DetectConfig
from beam_ml.deadletter import DeadLetter
from beam_ml.detectors import DetectorSpec, ScoreWindows, ToAlerts, Vote, new_detector, online_detector
from beam_ml.manifest import RunManifest, package_versions, utc_now
from beam_ml.pipeline import absolute, new_run_dir
from beam_ml.push import latest_model
from beam_ml.scoring import ScoreWithModel, window_model_info
from beam_ml.streaming import LATE, READINGS, WINDOWS, ParseTelemetry, Reading, WindowPerSensor
from beam_ml.windows import WindowSpec


# How long after the watermark passed an alert's or dead letter's file window it is still written (a later pane: a
# new file). Scoring takes time, and the local runner's watermark does not wait for timer output.
SINK_LATENESS_MARGIN = 60.0


# Without a model each reading is a window of its own, scored as it is released in event-time order.
READING_WINDOWS = WindowSpec("sensor_id", "timestamp", length=1)


@dataclasses.dataclass(frozen=True)
class DetectPlan:
    config: DetectConfig
    run_id: str
    run_dir: str
    model_dir: Optional[str]  # the version pushed at launch, if a model scores (later ones are picked up running)
    channels: tuple[str, ...]  # from the model, or --channels
    spec: WindowSpec  # the model's windowing, or a window per reading
    online: tuple[DetectorSpec, ...]  # the online detectors, in the order given
    started: str

    @property
    def members(self) -> int:
        return len(self.online) + (self.model_dir is not None)

    def manifest(self) -> RunManifest:
        return RunManifest(self.run_dir, {
            "run_id": self.run_id, "run_dir": self.run_dir, "started": self.started,
            "versions": package_versions(), "config": self.config.to_dict(), "model_dir_at_launch": self.model_dir,
            "channels": list(self.channels), "windowing": self.spec.to_dict()})


def online_detectors(config: DetectConfig) -> tuple[DetectorSpec, ...]:
    """The online members of --detector, each built once here so that a bad threshold fails at launch."""
    specs = []
    for name, threshold in config.detectors():
        if name == "model":
            continue
        try:
            spec = online_detector(name, threshold)
            new_detector(spec, 1)
        except ValueError as e:
            raise ConfigError("detector", f"{name}: {e}") from e
        specs.append(spec)
    return tuple(specs)


def plan_detect(config: DetectConfig) -> DetectPlan:
    config = dataclasses.replace(config, **{name: absolute(getattr(config, name))
                                            for name in ("serving_dir", "output_dir", "alerts_dir", "dead_letter_dir")})
    online = online_detectors(config)
    model_dir = None
    if config.serving_dir:
        model_dir = latest_model(config.serving_dir)
        if model_dir is None:
            raise ConfigError("serving_dir", f"no model has been pushed to {config.serving_dir}")
        try:
            info = window_model_info(model_dir)
        except ValueError as e:
            raise ConfigError("serving_dir", str(e)) from e
        channels, spec = info.channels, info.spec
    else:
        channels, spec = tuple(config.channels.split(",")), READING_WINDOWS
    run_id, run_dir = new_run_dir(config.output_dir, config.run_id)
    return DetectPlan(config, run_id, run_dir, model_dir, channels, spec, online, utc_now())


def late_dead_letter(reading: Reading, source: str, allowed_lateness: float) -> DeadLetter:
    raw = json.dumps({"sensor_id": reading.sensor_id, "timestamp": reading.timestamp, "values": reading.values})
    return DeadLetter(source, 0, raw, f"late: sensor {reading.sensor_id} was already released past event time "
                                      f"{reading.timestamp} (allowed lateness {allowed_lateness} s)")


def dead_letter_line(letter: DeadLetter) -> tuple[int, str]:
    return 0, letter.to_json()


def dead_letter_message(letter: DeadLetter):
    from apache_beam.io.gcp.pubsub import PubsubMessage
    return PubsubMessage(letter.to_json().encode("utf-8"), {"reason": letter.reason.split(":")[0][:100]})


class WriteStreamingDeadLetters(beam.PTransform):
    """Dead letters of an unbounded input to a Pub/Sub topic and/or JSON Lines files per event-time window.

    Example::

        dead_letters | WriteStreamingDeadLetters(topic="projects/p/topics/dead", files_dir=None)
    """

    def __init__(self, topic: Optional[str], files_dir: Optional[str], file_window: float, allowed_lateness: float):
        super().__init__()
        self._topic, self._files_dir = topic, files_dir
        self._file_window, self._lateness = file_window, allowed_lateness

    def expand(self, letters: beam.PCollection) -> None:
        if self._topic:
            _ = (letters
                 | "ToPubsubMessages" >> beam.Map(dead_letter_message)
                 | "WriteToPubSub" >> beam.io.WriteToPubSub(self._topic, with_attributes=True))
        if self._files_dir:
            _ = (letters
                 | "ToJsonLines" >> beam.Map(dead_letter_line)
                 | "Files" >> WriteJsonLinesFiles(self._files_dir, "dead_letter", self._file_window, self._lateness))


class DetectAnomalies(beam.PTransform):
    """The whole streaming job (see the module docstring); returns the readings, windows, verdicts, alerts and dead
    letters (for tests and benchmarks to tap).

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

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        plan = self._plan
        config, spec, lateness = plan.config, plan.spec, plan.config.allowed_lateness
        messages = pbegin | "ReadTelemetry" >> (self._source or beam.io.ReadFromPubSub(
            subscription=config.subscription, with_attributes=True))
        parsed = messages | "Parse" >> ParseTelemetry(plan.channels, source=config.subscription)
        windowed = parsed[READINGS] | "Windows" >> WindowPerSensor(spec.length, spec.stride, lateness, spec.max_gap,
                                                                   config.release_every)
        verdicts = []
        if plan.model_dir:
            verdicts.append(windowed[WINDOWS] | "Score" >> ScoreWithModel(config.serving_dir,
                                                                          poll_seconds=config.model_poll_seconds))
        if plan.online:
            verdicts.append(windowed[WINDOWS] | "ScoreOnline" >> ScoreWindows(plan.online, plan.channels))
        if plan.members > 1:
            verdicts = [tuple(verdicts) | "Vote" >> Vote(plan.members, config.vote)]
        alerts = verdicts[0] | "Alerts" >> ToAlerts(top=len(plan.channels))
        sink_lateness = lateness + SINK_LATENESS_MARGIN
        written = alerts | "WriteAlerts" >> WriteAlerts(config.alerts_topic, config.alerts_table, config.alerts_dir,
                                                        file_window=config.file_window, allowed_lateness=sink_lateness)
        late = windowed[LATE] | "LateToDeadLetters" >> beam.Map(late_dead_letter, config.subscription, lateness)
        dead_letters = ([parsed[DEAD_LETTER], late] + ([written[DEAD_LETTER]] if DEAD_LETTER in written else [])
                        | "AllDeadLetters" >> beam.Flatten())
        _ = dead_letters | "WriteDeadLetters" >> WriteStreamingDeadLetters(
            config.dead_letter_topic, config.dead_letter_dir, config.file_window, sink_lateness)
        return {"readings": parsed[READINGS], "windows": windowed[WINDOWS], "verdicts": verdicts[0], "alerts": alerts,
                "dead_letter": dead_letters}
