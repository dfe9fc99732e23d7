"""What the streaming detection job resolves at launch: the model pushed now (its channels and windowing), the
online detectors and the run; `plan_detect` fails with a ConfigError naming the option before anything starts.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Optional, Sequence

from beam_ml.config.detect import DetectConfig
from beam_ml.core.errors import ConfigError
from beam_ml.core.fileutil import read_text, storage_path
from beam_ml.core.run import RunContext, RunManifest
from beam_ml.core.windowing import WindowSpec
from beam_ml.lineage.store import resolve_store
from beam_ml.model.artifact import window_model_info
from beam_ml.model.push import latest_model, pushed_from
from beam_ml.stream.detectors.base import DetectorSpec
from beam_ml.stream.detectors.catalog import online_detector
from beam_ml.stream.detectors.context import SensorPrior
from beam_ml.stream.parse import SENSOR_ID, TIMESTAMP

# Without a model each reading is a window of its own, scored as it is released in event-time order.
READING_WINDOWS = WindowSpec(SENSOR_ID, TIMESTAMP, length=1)


@dataclasses.dataclass(frozen=True)
class DetectPlan:
    config: DetectConfig
    run: RunContext
    model_dir: Optional[str]  # the version pushed at launch, if a model scores (later ones are picked up running)
    channels: tuple[str, ...]  # from the model, or --channels
    spec: WindowSpec  # the model's windowing, or a window per reading
    online: tuple[DetectorSpec, ...]  # the online detectors, in the order given
    pushed_from: Optional[str] = None  # the training run's model that model_dir is a copy of

    @property
    def members(self) -> int:
        return len(self.online) + (self.model_dir is not None)

    def manifest(self) -> RunManifest:
        return self.run.manifest(model_dir_at_launch=self.model_dir, pushed_from=self.pushed_from,
                                 channels=list(self.channels), windowing=self.spec.to_dict())


def sensor_priors(path: str, channels: Sequence[str]) -> dict[str, SensorPrior]:
    """--sensor_ranges read at launch: {sensor_id: SensorPrior with each channel's range, or None where not given}."""
    try:
        given = json.loads(read_text(path))
    except (OSError, ValueError) as e:
        raise ConfigError("sensor_ranges", f"cannot read {path} as JSON: {e}") from e
    if not isinstance(given, dict) or not all(isinstance(ranges, dict) for ranges in given.values()):
        raise ConfigError("sensor_ranges", 'must hold {"<sensor_id>": {"<channel>": [low, high], ...}, ...}')
    priors = {}
    for sensor, ranges in given.items():
        unknown = sorted(set(ranges) - set(channels))
        if unknown:
            raise ConfigError("sensor_ranges", f"sensor {sensor!r}: {unknown} not among the channels {list(channels)}")
        try:
            priors[sensor] = SensorPrior(ranges=tuple(_value_range(ranges.get(c)) for c in channels))
        except (TypeError, ValueError) as e:
            raise ConfigError("sensor_ranges", f"sensor {sensor!r}: {e}") from e
    return priors


def _value_range(given) -> Optional[tuple[float, float]]:
    if given is None:
        return None
    if not isinstance(given, list) or len(given) != 2:
        raise ValueError(f"a range is [low, high], got {given!r}")
    return float(given[0]), float(given[1])


def online_detectors(config: DetectConfig, channels: Sequence[str]) -> tuple[DetectorSpec, ...]:
    """The online members of --detector, each built once here so that a bad threshold fails at launch."""
    priors = sensor_priors(config.sensor_ranges, channels) if config.sensor_ranges else {}
    specs = []
    for name, threshold in config.detectors():
        if name == "model":
            continue
        try:
            spec = online_detector(name, threshold, priors)
            spec.build(1)
        except ValueError as e:
            raise ConfigError("detector", f"{name}: {e}") from e
        specs.append(spec)
    return tuple(specs)


def plan_detect(config: DetectConfig) -> DetectPlan:
    config = dataclasses.replace(config, **{name: storage_path(getattr(config, name)) for name in (
        "serving_dir", "output_dir", "alerts_dir", "dead_letter_dir", "sensor_ranges")})
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
    online = online_detectors(config, channels)
    source_model = pushed_from(model_dir) if model_dir else None
    config = dataclasses.replace(config, metadata_store=resolve_store(
        config.metadata_store, config.metadata_password_env, config.output_dir, source_model or model_dir))
    run = RunContext.start("detect_anomalies", config.output_dir, config.run_id, config.to_dict())
    return DetectPlan(config, run, model_dir, channels, spec, online, source_model)
