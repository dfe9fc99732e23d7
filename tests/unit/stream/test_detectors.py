"""Online detectors (alone), ScoreWindows/Vote/ToAlerts on the DirectRunner, and the NAB harness on synthetic files."""
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

from beam_ml.core.windowing import SensorWindow
from beam_ml.stream.detectors.catalog import online_detector
from beam_ml.stream.detectors.context import (
    AnomalyLikelihood,
    ChannelDetector,
    ContextDetector,
    CountTable,
    DetectorConfig,
    LikelihoodConfig,
    SensorPrior,
    SequenceMemory,
    TimeOfDayProfile,
    day_kinds,
    log_likelihood,
    tail_probability,
)
from beam_ml.stream.detectors.univariate import BeamDetector, beam_detector
from beam_ml.stream.elements import Alert, ScoredWindow, scored_window, top_channels
from beam_ml.stream.online_scoring import ScoreWindows
from beam_ml.stream.verdicts import ToAlerts, Vote, ensemble_verdict

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


def test_time_of_day_profile_scores_the_distance_from_the_hours_usual_bin_in_units_of_its_spread():
    profile = TimeOfDayProfile(bucket_seconds=3600, spread=2.0, min_count=3)
    for day in range(40):
        profile.update(1, day * 86400 + 60)  # midnight always reads bin 1
        profile.update((10, 15, 20, 25, 30)[day % 5], day * 86400 + 7200)  # 02:00: median 20, MAD 5
    assert profile.update(1, 40 * 86400 + 60) == 0.0
    assert profile.update(2, 41 * 86400 + 60) == 0.5  # one bin off a quiet hour: 1 / (2 × one bin)
    assert profile.update(8, 42 * 86400 + 60) == 1.0
    assert profile.update(25, 40 * 86400 + 7200) == 0.5  # as unusual as bin 2 at midnight: 5 / (2 × 5)
    assert profile.update(60, 41 * 86400 + 7200) == 1.0


def test_a_weekly_profile_learns_weekends_apart_once_it_has_seen_enough_of_them():
    noon = 12 * 3600
    weekly, daily = (TimeOfDayProfile(3600, spread=2.0, min_count=3, weekly=w) for w in (True, False))
    monday = 4  # 1970-01-05
    assert day_kinds(monday * 86400 + noon) == (0, 7, 1) and day_kinds((monday + 6) * 86400) == (6, 8, 1)
    for day in range(monday, monday + 28):  # four weeks: busy weekday noons (bin 8), quiet weekend ones (bin 1)
        for profile in (weekly, daily):
            profile.update(1 if day_kinds(day * 86400)[0] >= 5 else 8, day * 86400 + noon)
    saturday = monday + 28 + 5
    assert weekly.update(1, saturday * 86400 + noon) == 0.0  # as Saturdays are
    assert daily.update(1, saturday * 86400 + noon) == 1.0  # every day together: noon is busy
    assert weekly.update(1, (monday + 35) * 86400 + noon) == 1.0  # a quiet Monday is not as Mondays are
    early = TimeOfDayProfile(3600, spread=2.0, min_count=3, weekly=True)
    for day in range(monday, monday + 12):  # a week and five days, weekends as quiet
        early.update(1 if day_kinds(day * 86400)[0] >= 5 else 8, day * 86400 + noon)
    # one earlier week's weekend could have been that week's: every day's profile still judges
    assert early.update(1, (monday + 12) * 86400 + noon) == 1.0


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


def test_a_sensor_prior_sets_its_channels_scale_from_the_first_reading_and_its_likelihood_learning():
    assert LikelihoodConfig.over(11) == LikelihoodConfig(learning_period=5, estimation_samples=6)
    spec = DetectorConfig(sensors={"pump": SensorPrior(ranges=((0.0, 20.0), (-5.0, 5.0)), learning_readings=40)})
    known, unknown = spec.build(2, "pump"), spec.build(2, "valve")
    values = _periodic(120)
    first_known = known.update(0.0, (values[0], 0.0))
    assert first_known == (pytest.approx(log_likelihood(0.5)),) * 2  # scored at once: no warm-up
    assert unknown.update(0.0, (values[0], 0.0)) == (0.0, 0.0)  # learns its range over `warmup` readings first
    # the likelihood estimates after 40 readings here, after 288 + 100 by default
    scores = [known.update(60.0 * i, (v, 0.0))[0] for i, v in enumerate(values[1:], start=1)]
    assert scores[38] == pytest.approx(log_likelihood(0.5)) and scores[40] != pytest.approx(log_likelihood(0.5))
    with pytest.raises(ValueError, match="2 ranges for 3 channels"):
        spec.build(3, "pump")


@pytest.mark.parametrize("kwargs, message", [
    (dict(ranges=((1.0, 0.0),)), "low <= high"), (dict(ranges=((0.0, math.inf),)), "finite"),
    (dict(learning_readings=1), "learning_readings"),
])
def test_a_bad_sensor_prior_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SensorPrior(**kwargs)
    with pytest.raises(ValueError, match="SensorPriors"):
        DetectorConfig(sensors={"pump": (0.0, 1.0)})


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
        detector.score_window(SensorWindow("s", (1e9,), ((1.0,),)))


@pytest.mark.parametrize("kwargs, message", [
    (dict(warmup=1), "warmup"), (dict(bins=0), "bins"), (dict(order=-1), "order"),
    (dict(season_hours=25), "season_hours"), (dict(tolerance=2.0), "tolerance"), (dict(name=""), "name"),
    (dict(season_spread=0), "season_spread"), (dict(season_averaging=0), "season_averaging"),
    (dict(threshold=0.0), "threshold"), (dict(threshold=1.5), "threshold"),
])
def test_bad_configuration_is_refused_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DetectorConfig(**kwargs)
    with pytest.raises(ValueError, match="top"):
        ToAlerts(top=0)
    with pytest.raises(ValueError, match="learning_period"):
        LikelihoodConfig(learning_period=0)


def _expected(windows_by_sensor, specs, channels):
    """What ScoreWindows should give: each sensor's windows through its own detectors, one after another."""
    out = []
    for sensor, windows in windows_by_sensor.items():
        detectors = [spec.build(len(windows[0].values[0])) for spec in specs]
        for window in windows:
            for detector in detectors:
                score, channel_scores = detector.score_window(window)
                out.append(scored_window(window, score, detector.threshold, channel_scores, detector.name, channels))
    return out


def _stream(by_sensor):
    """The sensors' windows interleaved, each sensor's in event-time order, stamped with their ends."""
    stream = TestStream()
    for i in range(max(len(w) for w in by_sensor.values())):
        stream = stream.add_elements([beam.window.TimestampedValue(w[i], w[i].end)
                                      for w in by_sensor.values() if i < len(w)])
    return stream.advance_watermark_to_infinity()


def _streaming_pipeline():
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return TestPipeline(options=options)


def test_top_channels_are_those_at_the_threshold_largest_first_or_else_the_largest():
    assert top_channels((0.5, 3.0, 4.0), ("a", "b", "c"), 3.0) == ("c", "b")
    assert top_channels((0.5, 2.0, 1.0), ("a", "b", "c"), 3.0) == ("b",)
    assert top_channels((0.5, 2.0), (), 1.0) == ("1",)


def test_score_windows_keeps_detectors_per_sensor_in_state_and_alerts_at_the_threshold():
    a = _periodic(80, seed=1)
    a[70] = 50.0
    by_sensor = {"a": _windows("a", a, channels=2), "b": _windows("b", _periodic(60, seed=2), channels=2)}
    channels = ("temperature", "pressure")
    specs = [DetectorConfig(**{**FAST.__dict__, "threshold": 0.99}), online_detector("iqr", 2.0)]
    expected = _expected(by_sensor, specs, channels)
    assert {s.detector for s in expected if s.alerting} == {FAST.name, "iqr"}
    assert {s.sensor_id for s in expected} == {"a", "b"}

    with _streaming_pipeline() as p:
        scores = p | _stream(by_sensor) | ScoreWindows(specs, channels=channels)
        alerts = scores | ToAlerts(top=1)
        assert_that(scores, equal_to(expected), label="Scores")
        assert_that(alerts, equal_to([Alert(s.sensor_id, s.start, s.end, s.score, s.threshold, s.detector,
                                            top_channels=s.top_channels[:1])
                                      for s in expected if s.alerting]), label="Alerts")


def test_beam_detector_runs_beams_own_detector_per_channel_after_a_warm_up():
    rng = np.random.default_rng(3)
    values = rng.normal(0, 1, (200, 2))
    values[150, 1] = 12.0
    ours = BeamDetector("robust_zscore", n_channels=2, warmup=30)
    scores = [ours.update(float(t), row) for t, row in enumerate(values)]
    theirs = beam_detector("robust_zscore")
    reference = []
    for v in values[:, 1]:
        reference.append(theirs.score_one(beam.Row(value=float(v))))
        theirs.learn_one(beam.Row(value=float(v)))
    assert all(s == (0.0, 0.0) for s in scores[:30])
    assert [s[1] for s in scores[30:]] == pytest.approx(reference[30:])
    assert ours.threshold == 3.0 and scores[150][1] > 3.0 and max(s[1] for s in scores[31:150]) < 5.0
    assert pickle.loads(pickle.dumps(ours)).update(201.0, (0.0, 0.0)) == ours.update(201.0, (0.0, 0.0))
    assert BeamDetector("iqr", 1).threshold == 1.5 and BeamDetector("zscore", 1, threshold=4).threshold == 4.0
    with pytest.raises(ValueError, match="unknown online detector 'lof'"):
        online_detector("lof")
    with pytest.raises(ValueError, match="threshold must be > 0"):
        BeamDetector("zscore", 1, threshold=0)


def _verdict(detector, score, threshold, end=10.0, top=("a",), version=None):
    return ScoredWindow("s", end - 3, end, score, threshold, detector, top, (), version)


@pytest.mark.parametrize("rule, alerting", [("any", True), ("majority", True), ("all", False)])
def test_an_ensemble_verdict_counts_the_members_alerting(rule, alerting):
    verdicts = [_verdict("model", 2.0, 1.0, top=("b", "a"), version="7"), _verdict("zscore", 4.0, 3.0),
                _verdict("iqr", 0.5, 1.5)]
    combined = ensemble_verdict(verdicts, rule)
    assert combined.alerting == alerting and combined.score == pytest.approx(2 / 3)
    assert combined.detector == "model+zscore" and combined.top_channels == ("b", "a")
    assert combined.model_version == "7" and (combined.start, combined.end) == (7.0, 10.0)
    quiet = ensemble_verdict([_verdict("zscore", 1.0, 3.0), _verdict("iqr", 0.5, 1.5)], "any")
    assert not quiet.alerting and quiet.detector == "iqr+zscore" and quiet.top_channels == ()


def test_vote_waits_for_every_member_of_each_window_whatever_their_windowing():
    model = [_verdict("model", 2.0, 1.0, end=float(e), version="7") for e in (10, 11, 12)]
    online = [_verdict(d, s, 3.0, end=float(e)) for e in (10, 11, 12) for d, s in (("zscore", 4.0), ("iqr", 1.0))]
    with _streaming_pipeline() as p:
        from_model = (p | "Model" >> beam.Create(model)
                      | "Fixed" >> beam.WindowInto(beam.window.FixedWindows(1.0)))
        from_online = p | "Online" >> beam.Create(online)
        voted = (from_model, from_online) | Vote(members=3, rule="majority")
        assert_that(voted | beam.Map(lambda v: (v.end, v.detector, v.alerting)),
                    equal_to([(float(e), "model+zscore", True) for e in (10, 11, 12)]))
    with pytest.raises(ValueError, match="unknown vote rule"):
        Vote(members=2, rule="most")
    with pytest.raises(ValueError, match="at least 2 members"):
        Vote(members=1)


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
    replayed = replay.detect({f.relative: replay.read_series(f.path) for f in files}, FAST, window_length=4, chunk=50)
    scores = replayed.scores
    assert all(counts == {"late": 0, "duplicate": 0} for counts in replayed.set_apart.values())
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


def test_a_clock_that_goes_back_is_replayed_as_the_streaming_job_sees_it_and_every_row_gets_a_result(tmp_path):
    from benchmarks.nab import replay

    start = np.datetime64("2020-01-01T00:00:00")
    minutes = [5 * i for i in range(100)] + [5 * i for i in range(88, 200)]  # back an hour at row 100 (NTP)
    values = _periodic(len(minutes), seed=3)
    path = tmp_path / "sensor.csv"
    path.write_text("timestamp,value\n" + "".join(f"{str(start + np.timedelta64(m, 'm')).replace('T', ' ')},"
                                                   f"{v:.4f}\n" for m, v in zip(minutes, values)))
    series = replay.read_series(str(path))
    assert len(series.values) == 212  # read as it is, rows in file order
    replayed = replay.detect({"sensor": series}, FAST, window_length=4, chunk=50)
    # Rows 100-111 repeat times the sensor had already released (the watermark passed them at row 99): set apart,
    # as late readings or as duplicates of the readings still in the sensor's window, and scored 0.
    counts = replayed.set_apart["sensor"]
    assert counts["late"] + counts["duplicate"] == 12 and counts["late"] > 0
    for detector in (FAST.name, replay.ZSCORE):
        scores = replayed.scores[detector]["sensor"]
        assert len(scores) == len(series.values) and not scores[100:112].any()
        assert scores[112:].any() and scores[4:100].any()  # scoring goes on after the jump
    out = tmp_path / "result.csv"
    replay.write_result(str(out), series, replayed.scores[FAST.name]["sensor"], np.zeros(212, dtype=int))
    assert len(out.read_text().splitlines()) == 1 + 212


def test_the_nab_command_line_runs_on_any_corpus_laid_out_like_nab(tmp_path, capsys):
    from benchmarks.nab.__main__ import main

    _write_nab_corpus(str(tmp_path))
    assert main(["--data", str(tmp_path / "data"), "--windows", str(tmp_path / "windows.json"),
                 "--out", str(tmp_path / "out"), "--workers", "1", "--detector", "ours"]) == 0
    printed = capsys.readouterr().out
    assert "| ours |" in printed and "| beamZScore |" in printed and "apache-beam" in printed
    assert "| artificial | ours |" in printed and "| real | beamZScore |" in printed  # per-category rows
    assert "ours: 2 incidents at the standard threshold (gap 3600 s), precision 1.00, recall 1.00 of 2 windows" \
        in printed  # one incident per spike, nothing else
    assert os.path.exists(tmp_path / "out" / "ours" / "real" / "ours_c.csv")
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path / "data"), "--windows", str(tmp_path / "windows.json"), "--detector", "a_b"])


def test_replay_helpers_split_files_evenly_and_restore_the_runner_after_a_replay():
    from apache_beam.runners.direct import transform_evaluator
    from apache_beam.typehints import decorators

    from benchmarks.common import memoized_dofn_inspection
    from benchmarks.nab import replay

    files = [replay.DataFile("c", f"{n}.csv", "") for n in "abcd"]
    sizes = {"c/a.csv": 10, "c/b.csv": 7, "c/c.csv": 3, "c/d.csv": 1}
    groups = replay.balanced_groups(files, sizes, 2)
    assert sorted(sum(sizes[f.relative] for f in g) for g in groups) == [10, 11]
    before = (decorators.get_signature, transform_evaluator._ParDoEvaluator.__init__)
    with memoized_dofn_inspection():
        assert decorators.get_signature is not before[0]
    assert (decorators.get_signature, transform_evaluator._ParDoEvaluator.__init__) == before
    assert replay.zscore_score(float("nan")) == 0.0 and replay.zscore_score(3.0) == 0.75


def test_the_offline_nab_loop_gives_every_row_the_score_the_streaming_replay_gives(tmp_path):
    from benchmarks.nab import offline, replay

    _write_nab_corpus(str(tmp_path))
    files = replay.discover(str(tmp_path / "data"))
    series = {f.relative: replay.read_series(f.path) for f in files}
    first_key = files[0].relative
    first = series[first_key]
    seconds = first.seconds.copy()
    seconds[40] = seconds[39]  # a repeated hour, as two NAB files have
    series[files[0].relative] = replay.Series(first.timestamps, seconds, first.values)
    priors = replay.with_nab_priors(FAST, series).sensors
    assert priors[first_key].ranges == ((first.values.min(), first.values.max()),)
    assert priors[first_key].learning_readings == max(2, int(0.15 * len(first.values)))  # NAB's probation
    by_spec = []
    for spec in (FAST, replay.with_nab_priors(FAST, series)):  # priors reach each sensor's detector in both
        replayed = replay.detect(series, spec, window_length=4, chunk=25, zscore=False)
        for key, s in series.items():
            np.testing.assert_array_equal(offline.offline_scores(s, spec, 4, key), replayed.scores[FAST.name][key])
        by_spec.append(replayed.scores[FAST.name])
    assert all(not np.array_equal(by_spec[0][key], by_spec[1][key]) for key in series)  # the priors changed them
    windows = replay.read_windows(str(tmp_path / "windows.json"))
    scores = {f.relative: offline.offline_scores(replay.read_series(f.path), FAST, 4) for f in files}
    times = {key: np.array([replay._datetime64(t) for t in s.timestamps]) for key, s in series.items()}
    assert replay.score_corpus(files, times, scores, windows)["standard"].score > 90  # as the replay's table says
