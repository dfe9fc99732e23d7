"""The online detectors the streaming job's `--detector` option names (`beam_ml.config.detect.DETECTORS`, less
"model"), each with its default threshold unless one is given.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping, Optional

from beam_ml.stream.detectors.base import DetectorSpec
from beam_ml.stream.detectors.context import DetectorConfig, SensorPrior
from beam_ml.stream.detectors.pca import PcaSpec
from beam_ml.stream.detectors.univariate import BEAM_DETECTORS, BeamDetectorSpec

ONLINE_DETECTORS = ("context", "pca", *BEAM_DETECTORS)


def online_detector(name: str, threshold: Optional[float] = None,
                    priors: Mapping[str, SensorPrior] = MappingProxyType({})) -> DetectorSpec:
    """The spec of an online detector by name: "context", "pca" or one of `BEAM_DETECTORS`; its default threshold
    unless `threshold` is given; `priors` (what is known of some sensors) go to the context detector. ValueError for
    an unknown name or a bad threshold."""
    if name == "context":
        return DetectorConfig(sensors=dict(priors), **({} if threshold is None else {"threshold": threshold}))
    if name == "pca":
        return PcaSpec() if threshold is None else PcaSpec(alert_at=threshold)
    if name not in BEAM_DETECTORS:
        raise ValueError(f"unknown online detector {name!r}: one of {', '.join(ONLINE_DETECTORS)}")
    return BeamDetectorSpec(name, threshold)
