"""The NAB scorer on hand-made series whose scores follow from the published rules."""
import math

import numpy as np
import pytest

from benchmarks.nab.scoring import PROFILES, label_file, normalised, probation_rows, raw_score, scaled_sigmoid, sweep

STANDARD = PROFILES["standard"]
T = np.arange("2020-01-01T00:00", "2020-01-01T10:00", np.timedelta64(1, "m"), dtype="datetime64[s]")  # 600 rows
WINDOWS = [(T[200], T[219]), (T[400], T[419])]  # two 20-row windows after the 90-row probation


def _labelled(profile=STANDARD):
    labelled, scorable = label_file("f", T, WINDOWS, profile)
    return labelled, scorable


def _score(scores, profile=STANDARD):
    labelled, scorable = _labelled(profile)
    return labelled, np.asarray(scores, dtype=float)[scorable]


def test_scaled_sigmoid_matches_the_published_values():
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == -1.0
    assert probation_rows(600) == 90 and probation_rows(10_000) == 750


def test_null_scores_0_and_perfect_scores_100():
    labelled, _ = _labelled()
    null = _score(np.zeros(len(T)))
    perfect_scores = np.zeros(len(T))
    perfect_scores[[200, 400]] = 1.0
    perfect = _score(perfect_scores)
    assert raw_score([null], 0.5, STANDARD) == -2.0
    assert raw_score([perfect], 0.5, STANDARD) == pytest.approx(2.0)
    assert normalised(raw_score([null], 0.5, STANDARD), [labelled], STANDARD) == 0.0
    assert normalised(raw_score([perfect], 0.5, STANDARD), [labelled], STANDARD) == pytest.approx(100.0)


def test_earlier_detections_in_a_window_earn_more_and_only_the_best_counts():
    scores_late, scores_early, scores_both = (np.zeros(len(T)) for _ in range(3))
    scores_late[219] = scores_early[205] = 1.0
    scores_both[[205, 219]] = 1.0
    late = raw_score([_score(scores_late)], 0.5, STANDARD)
    early = raw_score([_score(scores_early)], 0.5, STANDARD)
    both = raw_score([_score(scores_both)], 0.5, STANDARD)
    assert early > late > -2.0 and both == early
    # the window's last row: position -1/20
    assert late == pytest.approx(-1.0 + scaled_sigmoid(-1 / 20) / scaled_sigmoid(-1.0))


def test_false_positives_cost_more_far_from_a_window_and_probation_is_not_scored():
    before, just_after, probation = (np.zeros(len(T)) for _ in range(3))
    before[150] = 1.0  # before any window: the full cost
    just_after[221] = 1.0  # 2 rows after a 20-row window: position 2/19
    probation[10] = 1.0
    assert raw_score([_score(before)], 0.5, STANDARD) == pytest.approx(-2.0 - 0.11)
    assert raw_score([_score(just_after)], 0.5, STANDARD) == pytest.approx(-2.0 + 0.11 * scaled_sigmoid(2 / 19))
    assert raw_score([_score(probation)], 0.5, STANDARD) == -2.0


def test_the_sweep_finds_the_best_threshold_for_the_corpus():
    scores = np.full(len(T), 0.1)
    scores[[200, 400]] = 0.9  # both windows caught at 0.9 ...
    scores[300] = 0.95  # ... and one false positive above them
    scores[500:560] = 0.5  # many false positives at 0.5
    pair = _score(scores)
    threshold, best = sweep([pair], STANDARD)
    assert threshold == 0.9
    assert best == pytest.approx(raw_score([pair], 0.9, STANDARD))
    assert best > raw_score([pair], 0.95, STANDARD) and best > raw_score([pair], 0.5, STANDARD)
    for candidate in np.unique(scores):
        assert raw_score([pair], candidate, STANDARD) <= best + 1e-9


def test_profiles_weigh_misses_and_false_alarms_differently():
    scores = np.zeros(len(T))
    scores[150] = 1.0  # one false positive, both windows missed
    low_fp = raw_score([_score(scores, PROFILES["reward_low_FP_rate"])], 0.5, PROFILES["reward_low_FP_rate"])
    low_fn = raw_score([_score(scores, PROFILES["reward_low_FN_rate"])], 0.5, PROFILES["reward_low_FN_rate"])
    assert low_fp == pytest.approx(-2.0 - 0.22) and low_fn == pytest.approx(-4.0 - 0.11)
    assert not math.isnan(normalised(low_fn, [_labelled(PROFILES["reward_low_FN_rate"])[0]],
                                     PROFILES["reward_low_FN_rate"]))
