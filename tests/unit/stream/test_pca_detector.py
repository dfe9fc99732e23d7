"""The PCA T²+Q detector: silent while it fits, quiet on readings like the fit ones, alerting on a broken correlation
and naming the channel that broke it; through ScoreWindows as the streaming job runs it; and the SKAB benchmark's
command line on a corpus laid out like SKAB's."""
import pickle

import numpy as np
import pytest

from beam_ml.stream.detectors.catalog import online_detector
from beam_ml.stream.detectors.pca import PcaSpec, fit_pca

CHANNELS = 4


def _machine(rows: int, seed: int = 0) -> np.ndarray:
    """Four channels driven by one load (as a pump's current, flow, pressure and temperature), plus noise."""
    rng = np.random.default_rng(seed)
    load = 1 + 0.3 * np.sin(np.arange(rows) / 15) + rng.normal(0, 0.02, rows)
    return np.column_stack([10 * load, 50 * load, 3 * load, 60 + 5 * load]) + rng.normal(0, 0.05, (rows, CHANNELS))


def test_fit_keeps_the_components_explaining_the_variance_and_floors_the_scale():
    values = _machine(400)
    values[:, 3] = 70.0  # constant while fitting
    model = fit_pca(values, PcaSpec())
    assert model.components.shape == (CHANNELS, 1)  # one load drives all: one component is 95%
    assert model.scale[3] == pytest.approx(0.05 * 70.0)  # not 0: a later wobble is not an outlier
    t2, q, t2_terms, residuals = model.statistics(values[:5])
    np.testing.assert_allclose(t2_terms.sum(axis=1), t2, rtol=1e-9)
    np.testing.assert_allclose(residuals.sum(axis=1), q, rtol=1e-9)


def test_scores_nothing_while_fitting_little_on_normal_readings_and_names_the_channel_that_broke_away():
    spec = PcaSpec(fit_readings=300, smoothing=10)
    detector = pickle.loads(pickle.dumps(spec.build(CHANNELS)))  # it lives in Beam state
    values = _machine(600, seed=1)
    values[450:500, 1] += 8.0  # flow leaves its coupling to the load for 50 readings
    scores = [detector.update(float(i), row) for i, row in enumerate(values)]
    assert all(s == (0.0,) * CHANNELS for s in scores[:300])
    top = [max(s) for s in scores]
    assert np.mean(np.array(top[300:450]) >= 1.0) < 0.05  # normal: (almost) no alerts
    assert np.mean(np.array(top[455:500]) >= 1.0) > 0.95  # the broken correlation: alerts
    assert all(int(np.argmax(s)) == 1 for s in scores[455:500])  # flow named
    assert detector.name == "pca" and detector.threshold == 1.0


def test_slow_drift_is_followed_while_an_abrupt_fault_of_the_same_size_still_alerts():
    values = _machine(3000, seed=2)
    values[:, 3] += np.linspace(0, 8, 3000)  # the temperature creeps up by 8 over the run, as a machine warms
    values[2400:2500, 3] += 8.0  # then jumps by as much
    def alerts(spec):
        detector = spec.build(CHANNELS)
        return np.array([max(detector.update(float(i), row)) >= 1.0 for i, row in enumerate(values)])
    followed, fixed = alerts(PcaSpec()), alerts(PcaSpec(follow_seconds=0))
    assert followed[400:2400].mean() < 0.02 and followed[2430:2500].all()
    assert fixed[1800:2400].mean() > 0.9  # a centre fixed at the fit mean calls the drift a fault
    with pytest.raises(ValueError, match="follow_seconds"):
        PcaSpec(follow_seconds=-1)


def test_the_catalog_builds_it_with_its_alert_threshold():
    assert online_detector("pca") == PcaSpec()
    assert online_detector("pca", 1.5).build(3).threshold == 1.5
    with pytest.raises(ValueError):
        PcaSpec(fit_readings=1)


def test_the_skab_command_line_scores_a_corpus_laid_out_like_skab(tmp_path, capsys):
    from benchmarks.skab import main, outlier_metrics
    folder = tmp_path / "valve1"
    folder.mkdir()
    start = np.datetime64("2020-03-09T10:00:00")
    for n in range(2):
        values = _machine(700, seed=10 + n)
        anomaly = np.zeros(700, dtype=int)
        anomaly[520:600] = 1
        changepoint = np.zeros(700, dtype=int)
        changepoint[[520, 600]] = 1
        values[520:600, 2] += 2.0  # pressure breaks away
        lines = ["datetime;A;B;Pressure;D;anomaly;changepoint"]
        lines += [f"{str(start + np.timedelta64(i, 's')).replace('T', ' ')};" + ";".join(f"{v:.5f}" for v in row)
                  + f";{a}.0;{c}.0" for i, (row, a, c) in enumerate(zip(values, anomaly, changepoint))]
        (folder / f"{n}.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "anomaly-free").mkdir()
    (tmp_path / "anomaly-free" / "anomaly-free.csv").write_text("datetime;A\n2020-01-01 00:00:00;1.0\n")
    assert main(["--data", str(tmp_path), "--workers", "1", "--detectors", "pca", "context"]) == 0
    printed = capsys.readouterr().out
    assert "| beam_ml context, per channel (streaming) |" in printed  # NAB's detector, each channel alone
    assert "SKAB outliers: 2 files with faults and 1 without, 1,401 rows (600 scored" in printed
    assert "| Conv-AE (published) | 0.78" in printed
    f1 = float(next(line for line in printed.splitlines() if line.startswith("| beam_ml")).split("|")[2])
    assert f1 > 0.8  # the averaging over 30 readings is late by part of each 80-row fault
    assert outlier_metrics([np.array([1, 1, 0, 0])], [np.array([1, 0, 1, 0])]) == (0.5, 50.0, 50.0)
    assert "incidents (gap 60 s): 2, precision 1.00, recall 1.00 (2 faults)" in printed  # one per fault
    standard = float(next(line for line in printed.splitlines()
                           if line.startswith("| beam_ml") and line.count("|") == 5).split("|")[2])
    assert standard > 0  # the alerts' starts and ends fall in the windows after the changepoints


def test_incidents_group_alerts_within_the_gap_and_are_judged_against_the_faults():
    from benchmarks.incidents import fault_segments, incident_metrics, incidents
    times = np.arange(100, dtype=float)
    alerts = np.zeros(100)
    alerts[[10, 11, 30, 60, 61, 62]] = 1
    assert incidents(times, alerts, gap=10) == [(10.0, 11.0), (30.0, 30.0), (60.0, 62.0)]
    anomaly = np.zeros(100)
    anomaly[55:70] = 1
    assert fault_segments(times, anomaly) == [(55.0, 69.0)]
    assert incident_metrics([(incidents(times, alerts, gap=10), fault_segments(times, anomaly))]) == (1 / 3, 1.0, 3)


def test_detected_changepoints_are_where_the_alerts_start_or_end_and_windows_merge():
    from benchmarks.skab import alert_edges, changepoint_windows
    assert alert_edges(np.array([0, 1, 1, 0, 0, 1])).tolist() == [0, 1, 0, 1, 0, 1]
    times = np.datetime64("2020-01-01T00:00:00") + np.arange(200).astype("timedelta64[s]")
    assert changepoint_windows(times, [10, 50, 150], 60) == [(times[10], times[110]), (times[150], times[150] + 60)]
