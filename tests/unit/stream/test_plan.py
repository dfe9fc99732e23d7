"""The detection job's launch-time plan: --sensor_ranges read and checked before anything starts."""
import json

import pytest

from beam_ml.config.detect import DetectConfig
from beam_ml.core.errors import ConfigError
from beam_ml.stream.detectors.context import DetectorConfig, SensorPrior
from beam_ml.stream.plan import plan_detect

CHANNELS = "temperature,pressure"


def _plan(tmp_path, ranges, detector="context"):
    path = tmp_path / "ranges.json"
    path.write_text(ranges if isinstance(ranges, str) else json.dumps(ranges))
    return plan_detect(DetectConfig.load(None, {
        "subscription": "projects/test-project/subscriptions/telemetry", "detector": detector, "channels": CHANNELS,
        "sensor_ranges": str(path), "output_dir": str(tmp_path / "runs"), "alerts_dir": str(tmp_path / "alerts"),
        "dead_letter_dir": str(tmp_path / "dead")}))


def test_known_ranges_reach_the_context_detector_channel_by_channel(tmp_path):
    plan = _plan(tmp_path, {"pump-7": {"pressure": [0, 10]}, "pump-8": {}}, detector="context,zscore")
    context = plan.online[0]
    assert isinstance(context, DetectorConfig)
    assert context.sensors == {"pump-7": SensorPrior(ranges=(None, (0.0, 10.0))),
                               "pump-8": SensorPrior(ranges=(None, None))}
    temperature, pressure = context.build(2, "pump-7").update(0.0, (20.0, 5.0))
    assert temperature == 0.0 < pressure  # pressure's range is known: scored from the first reading


@pytest.mark.parametrize("ranges, detector, message", [
    ({"pump-7": {"pressure": [0, 10]}}, "zscore", "--sensor_ranges: is read by the context detector only"),
    ("{not json", "context", "--sensor_ranges: cannot read .* as JSON"),
    ({"pump-7": [0, 10]}, "context", '--sensor_ranges: must hold {"<sensor_id>"'),
    ({"pump-7": {"flow": [0, 10]}}, "context", r"--sensor_ranges: sensor 'pump-7': \['flow'\] not among"),
    ({"pump-7": {"pressure": [10, 0]}}, "context", "--sensor_ranges: sensor 'pump-7': .*low <= high"),
    ({"pump-7": {"pressure": [0]}}, "context", r"--sensor_ranges: sensor 'pump-7': a range is \[low, high\]"),
    ({"pump-7": {"pressure": ["a", 1]}}, "context", "--sensor_ranges: sensor 'pump-7': could not convert"),
])
def test_a_bad_ranges_file_fails_at_launch_naming_the_option(tmp_path, ranges, detector, message):
    with pytest.raises(ConfigError, match=message):
        _plan(tmp_path, ranges, detector)
