"""Online detectors (alone), ScoreWindows/ToAlerts on the DirectRunner, and the NAB harness on synthetic files."""
import json
import math
import os
import pickle

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to

from beam_ml.detectors import (AnomalyLikelihood, ChannelDetector, ContextDetector, CountTable, DetectorConfig,
                               LikelihoodConfig, ScoredWindow, ScoreWindows, SequenceMemory, ToAlerts,
                               TimeOfDayProfile, log_likelihood, tail_probability)
from beam_ml.streaming import Alert, SensorWindow

FAST = DetectorConfig(warmup=20, likelihood=LikelihoodConfig(learning_period=20, estimation_samples=10,
                                                             history=200, reestimation_period=10))


def _periodic(n, period=12, seed=0):
    rng = np.random.default_rng(seed)
    return 10 + 5 * np.sin(2 * np.pi * np.arange(n) / period) + rng.normal(0, 0.05, n)


def test_likelihood_scale_and_tail_probability():
    assert log_likelihood(0.5) == pytest.approx(0.0301, abs=1e-4)
    assert log_likelihood(0.99999) == pytest.approx(0.5, abs=1e-6)
    assert log_likelihood(1.0) == pytest.approx(1.0)
    assert tail_probability(0.0, mean=1.0, stdev=1.0) == 0.5  # below the mean is not anomalous
    assert tail_probability(3.0, mean=1.0, stdev=1.0) == pytest.approx(0.02275, abs=1e-5)


def test_anomaly_likelihood_waits_then_flags_a_burst_of_raw_scores_and_damps_a_run():
    likelihood = AnomalyLikelihood(LikelihoodConfig(learning_period=10, estimation_samples=10, history=100,
                                                    reestimation_period=100, averaging_window=2))
    rng = np.random.default_rng(1)
    quiet = [likelihood.update(float(r)) for r in rng.uniform(0, 0.1, 60)]
    assert quiet[:20] == [0.5] * 20 and max(quiet) < 0.9999
    burst = [likelihood.update(1.0) for _ in range(4)]
    assert burst[0] > 0.99999  # the average of 2 crosses at once
    assert burst[1:] == [pytest.approx(1 - 1e-3)] * 3  # a run of extreme tail probabilities counts once in full


def test_count_table_counts_keys_and_pickles():
    table = CountTable()
    table.add(np.array([5, 3, 5]))
    table.add(np.array([-2, 5]))
    assert table.get(np.array([5, 3, -2, 7, 100])).tolist() == [3, 1, 1, 0, 0]
    assert pickle.loads(pickle.dumps(table)).get(np.array([5, -2])).tolist() == [3, 1]
    assert len(table) == 3


def test_sequence_memory_learns_a_pattern_and_flags_what_breaks_it():
    memory = SequenceMemory(order=2, tolerance=0.0, bucket_seconds=0)
    raws = [memory.update(b, 0.0) for b in [1, 2, 3, 4] * 20]
    assert raws[0] == 1.0 and raws[-1] == 0.0 and max(raws[-40:]) == 0.0
    assert memory.update(1, 0.0) == 0.0  # (3, 4) → 1 as always
    assert memory.update(3, 0.0) == 1.0  # (4, 1) was always followed by 2


def test_time_of_day_profile_flags_a_value_unusual_for_the_hour():
    profile = TimeOfDayProfile(bucket_seconds=3600, tolerance=0.0, min_count=3)
    for day in range(5):
        assert profile.update(1, day * 86400 + 60) >= 0.0
        profile.update(8, day * 86400 + 7200)
    assert profile.update(1, 5 * 86400 + 60) == 0.0
    assert profile.update(8, 6 * 86400 + 60) == 1.0  # 8 is normal at 02:00, never at 00:00


def test_channel_detector_scores_a_spike_one():
    values = _periodic(200)
    values[150] = 40.0  # far outside the range seen
    detector = ChannelDetector(FAST)
    scores = np.array([detector.update(60.0 * i, v) for i, v in enumerate(values)])
    assert scores[:20].max() == 0.0 and ((scores >= 0) & (scores <= 1)).all()
    assert scores[150] == 1.0 and scores[60:150].max() < 0.5


def test_channel_detector_flags_a_day_without_its_daily_rise():
    rng = np.random.default_rng(0)
    n = 288 * 10  # ten days every 5 minutes
    hours = (np.arange(n) * 300 / 3600) % 24
    values = np.where((hours >= 8) & (hours < 20), 80.0, 20.0) + rng.normal(0, 1, n)
    values[288 * 8:288 * 9] = 20 + rng.normal(0, 1, 288)  # day 8 stays low, within the range seen
    detector = ChannelDetector(DetectorConfig())
    scores = np.array([detector.update(300.0 * i, v) for i, v in enumerate(values)])
    missed_day = scores[288 * 8:288 * 9]
    assert missed_day.max() > 0.5 > scores[400:288 * 8].max()
    assert 96 <= int(np.argmax(missed_day)) < 144  # flagged in the morning, when the rise does not come


def test_channel_detector_state_round_trips_through_pickle_mid_stream():
    values = _periodic(200)
    whole = ChannelDetector(FAST)
    expected = [whole.update(60.0 * i, v) for i, v in enumerate(values)]
    half = ChannelDetector(FAST)
    got = [half.update(60.0 * i, v) for i, v in enumerate(values[:100])]
    half = pickle.loads(pickle.dumps(half))
    got += [half.update(60.0 * (i + 100), v) for i, v in enumerate(values[100:])]
    assert got == expected


def _windows(sensor, values, length=4, channels=1):
    rows = [tuple(float(v) + c for c in range(channels)) for v in values]
    return [SensorWindow(sensor, tuple(60.0 * j for j in range(i - length + 1, i + 1)),
                         tuple(rows[i - length + 1:i + 1]))
            for i in range(length - 1, len(rows))]


def test_context_detector_scores_only_new_readings_and_names_the_top_channel():
    detector = ContextDetector(FAST, n_channels=2)
    windows = _windows("s", _periodic(120), channels=2)
    for window in windows:
        detector.score_window(window)
    assert detector.score_window(windows[-1]) == (0.0, (0.0, 0.0))  # nothing new
    spike = SensorWindow("s", (windows[-1].end + 60,), ((10.0, 99.0),))
    score, channel_scores = detector.score_window(spike)
    assert score == 1.0 and channel_scores[1] == 1.0 and channel_scores[0] < 1.0
    with pytest.raises(ValueError, match="expected 2 channels"):
        detector.update(1e9, (1.0,))


@pytest.mark.parametrize("kwargs, message", [
    (dict(warmup=1), "warmup"), (dict(bins=0), "bins"), (dict(order=-1), "order"),
    (dict(season_hours=25), "season_hours"), (dict(tolerance=2.0), "tolerance"), (dict(name=""), "name"),
])
def test_bad_configuration_is_refused_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DetectorConfig(**kwargs)
    with pytest.raises(ValueError, match="threshold"):
        ToAlerts(threshold=1.5)
    with pytest.raises(ValueError, match="learning_period"):
        LikelihoodConfig(learning_period=0)


def _expected(windows_by_sensor, config, channels):
    out = []
    for sensor, windows in windows_by_sensor.items():
        detector = ContextDetector(config, len(windows[0].values[0]))
        for window in windows:
            score, channel_scores = detector.score_window(window)
            names = sorted((i for i, s in enumerate(channel_scores) if s > 0), key=lambda i: -channel_scores[i])
            out.append(ScoredWindow(sensor, window.start, window.end, score, config.name,
                                    tuple(channels[i] for i in names), channel_scores))
    return out


def test_score_windows_keeps_a_detector_per_sensor_in_state_and_alerts_above_the_threshold():
    a = _periodic(80, seed=1)
    a[70] = 50.0
    by_sensor = {"a": _windows("a", a, channels=2), "b": _windows("b", _periodic(60, seed=2), channels=2)}
    channels = ("temperature", "pressure")
    expected = _expected(by_sensor, FAST, channels)
    assert any(s.score == 1.0 for s in expected) and {s.sensor_id for s in expected} == {"a", "b"}

    stream = TestStream()
    for i in range(max(len(w) for w in by_sensor.values())):  # the sensors interleaved, each in event-time order
        stream = stream.add_elements([beam.window.TimestampedValue(w[i], w[i].end)
                                      for w in by_sensor.values() if i < len(w)])
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    with TestPipeline(options=options) as p:
        scores = p | stream.advance_watermark_to_infinity() | ScoreWindows(FAST, channels=channels)
        alerts = scores | ToAlerts(threshold=0.99, top=1)
        assert_that(scores, equal_to(expected), label="Scores")
        assert_that(alerts, equal_to([Alert(s.sensor_id, s.start, s.end, s.score, 0.99, FAST.name,
                                            top_channels=s.top_channels[:1])
                                      for s in expected if s.score >= 0.99]), label="Alerts")


# --- the NAB harness ------------------------------------------------------------------------------------------------

def _write_nab_corpus(root, rows=90):
    """Three small files laid out as NAB's data/<category>/<file>.csv, with windows."""
    start = np.datetime64("2020-01-01T00:00:00")
    windows = {}
    for category, name, spike in [("artificial", "a.csv", 60), ("artificial", "b.csv", None), ("real", "c.csv", 70)]:
        values = _periodic(rows, seed=len(name) + (spike or 0))
        if spike:
            values[spike] = 60.0
        folder = os.path.join(root, "data", category)
        os.makedirs(folder, exist_ok=True)
        stamps = [str(start + np.timedelta64(5 * i, "m")).replace("T", " ") for i in range(rows)]
        with open(os.path.join(folder, name), "w") as f:
            f.write("timestamp,value\n" + "".join(f"{t},{v:.4f}\n" for t, v in zip(stamps, values)))
        windows[f"{category}/{name}"] = ([[stamps[spike - 3] + ".000000", stamps[spike + 3] + ".000000"]]
                                         if spike else [])
    with open(os.path.join(root, "windows.json"), "w") as f:
        json.dump(windows, f)
    return windows


def test_the_nab_harness_replays_writes_nab_results_and_scores_them(tmp_path):
    from benchmarks.nab import replay

    windows = _write_nab_corpus(str(tmp_path))
    files = replay.discover(str(tmp_path / "data"))
    assert [f.relative for f in files] == ["artificial/a.csv", "artificial/b.csv", "real/c.csv"]
    scores = replay.detect({f.relative: replay.read_series(f.path) for f in files}, FAST, window_length=4, chunk=50)
    out = str(tmp_path / "results")
    for f in files:
        series = replay.read_series(f.path)
        for detector in (FAST.name, replay.ZSCORE):
            replay.write_result(replay.result_path(out, detector, f), series, scores[detector][f.relative],
                                replay.labels(series, windows[f.relative]))

    path = os.path.join(out, FAST.name, "artificial", f"{FAST.name}_a.csv")
    with open(path) as f:
        lines = f.read().splitlines()
    with open(files[0].path) as f:
        data = f.read().splitlines()
    assert lines[0] == "timestamp,value,anomaly_score,label" and len(lines) == len(data)
    assert [line.split(",")[0] for line in lines[1:]] == [line.split(",")[0] for line in data[1:]]
    rows = [line.split(",") for line in lines[1:]]
    assert [float(r[2]) for r in rows[:3]] == [0.0, 0.0, 0.0]  # before the first full window
    assert [int(r[3]) for r in rows].count(1) == 7 and rows[60][3] == "1"
    assert float(rows[60][2]) == 1.0  # the spike is far outside the range seen
    zscores = [float(line.split(",")[2]) for line in
               open(os.path.join(out, replay.ZSCORE, "artificial", f"{replay.ZSCORE}_a.csv")).read().splitlines()[1:]]
    assert all(0 <= z < 1 for z in zscores) and zscores[60] == max(zscores)

    table = {d: replay.score_results(out, d, files, windows) for d in (FAST.name, replay.ZSCORE)}
    for by_profile in table.values():
        assert set(by_profile) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
        assert all(math.isfinite(s.score) for s in by_profile.values())
    assert table[FAST.name]["standard"].score > 90  # both spikes caught at their first row, nothing else flagged


def test_the_nab_command_line_runs_on_any_corpus_laid_out_like_nab(tmp_path, capsys):
    from benchmarks.nab.__main__ import main

    _write_nab_corpus(str(tmp_path))
    assert main(["--data", str(tmp_path / "data"), "--windows", str(tmp_path / "windows.json"),
                 "--out", str(tmp_path / "out"), "--workers", "1", "--detector", "ours"]) == 0
    printed = capsys.readouterr().out
    assert "| ours |" in printed and "| beamZScore |" in printed and "apache-beam" in printed
    assert os.path.exists(tmp_path / "out" / "ours" / "real" / "ours_c.csv")
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path / "data"), "--windows", str(tmp_path / "windows.json"), "--detector", "a_b"])


def test_replay_helpers_split_files_evenly_and_restore_the_runner_after_a_replay():
    from apache_beam.runners.direct import transform_evaluator
    from apache_beam.typehints import decorators

    from benchmarks.nab import replay

    files = [replay.DataFile("c", f"{n}.csv", "") for n in "abcd"]
    sizes = {"c/a.csv": 10, "c/b.csv": 7, "c/c.csv": 3, "c/d.csv": 1}
    groups = replay.balanced_groups(files, sizes, 2)
    assert sorted(sum(sizes[f.relative] for f in g) for g in groups) == [10, 11]
    before = (decorators.get_signature, transform_evaluator._ParDoEvaluator.__init__)
    with replay.memoized_dofn_inspection():
        assert decorators.get_signature is not before[0]
    assert (decorators.get_signature, transform_evaluator._ParDoEvaluator.__init__) == before
    assert replay.zscore_score(float("nan")) == 0.0 and replay.zscore_score(3.0) == 0.75
