"""Hyperparameter search in the graph: the `tuning` option's checks, Optuna's asks given a study's history, the best
trial, and TuneHyperparameters on a pipeline (rounds, failed trials, a resumed study), with a module whose objective
is a known function of its parameters, so the search's answer can be checked."""
import json
import os

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from beam_ml.config.train import PipelineConfig
from beam_ml.config.tuning import TuningSpec
from beam_ml.core.errors import ConfigError
from beam_ml.core.layout import study_file
from beam_ml.train.trainer import FnArgs
from beam_ml.train.tuning import (Pruning, TuneHyperparameters, ask_trials, best_hyperparameters, best_trial,
                                  load_study, objective_value, rounds)
from beam_ml.train.user_module import UserModule
from tests.support.paths import PENGUINS_CONFIG

SPACE = {"x": {"low": -5.0, "high": 5.0}, "units": {"low": 2, "high": 64, "int": True, "log": True},
         "activation": {"choices": ["relu", "tanh"]}}


def _spec(**fields) -> TuningSpec:
    return TuningSpec.parse({"study": "s", "objective": "score", "search_space": SPACE, **fields}, default_seed=1)


@pytest.mark.parametrize("tuning, message", [
    ({"objective": "score", "search_space": SPACE}, "study is required"),
    ({"study": "../up", "objective": "score", "search_space": SPACE}, "study must be a name"),
    ({"study": "s", "objective": "score", "search_space": SPACE, "direction": "up"}, "direction must be one of"),
    ({"study": "s", "objective": "score", "search_space": SPACE, "trials": 0}, "trials must be an integer"),
    ({"study": "s", "objective": "score", "search_space": SPACE, "parallelism": "4"}, "parallelism must be"),
    ({"study": "s", "objective": "score", "search_space": {}}, "search_space must be a non-empty object"),
    ({"study": "s", "objective": "score", "search_space": {"x": {"low": 1, "high": 1}}}, r"search_space\.x: low < high"),
    ({"study": "s", "objective": "score", "search_space": {"x": {"low": 0, "high": 1, "log": True}}},
     r"search_space\.x: a log range needs low > 0"),
    ({"study": "s", "objective": "score", "search_space": {"x": {"low": 0.5, "high": 3, "int": True}}},
     r"search_space\.x: low < high, integers"),
    ({"study": "s", "objective": "score", "search_space": {"x": {"choices": []}}}, r"search_space\.x: choices"),
    ({"study": "s", "objective": "score", "search_space": {"x": [1, 2]}}, r"search_space\.x: give"),
    ({"study": "s", "objective": "score", "search_space": SPACE, "budget": 3}, r"unknown fields \['budget'\]"),
])
def test_a_bad_tuning_option_is_named_with_its_field(tuning, message):
    with pytest.raises(ConfigError, match=f"^--tuning: .*{message}"):
        PipelineConfig.load(PENGUINS_CONFIG, {"tuning": json.dumps(tuning)})


def test_the_tuning_option_defaults():
    spec = PipelineConfig.load(PENGUINS_CONFIG, {"tuning": json.dumps(
        {"study": "s", "objective": "score", "search_space": SPACE}), "seed": "9"}).tuning_spec
    assert (spec.direction, spec.trials, spec.parallelism, spec.seed) == ("maximize", 8, 4, 9)
    assert [p.name for p in spec.parameters] == ["x", "units", "activation"]
    assert PipelineConfig.load(PENGUINS_CONFIG, {}).tuning_spec is None


def test_rounds_take_the_finished_trials_into_account():
    assert rounds(_spec(trials=8, parallelism=4), 0) == [4, 4]
    assert rounds(_spec(trials=10, parallelism=4), 0) == [4, 4, 2]
    assert rounds(_spec(trials=8, parallelism=4), 6) == [2]
    assert rounds(_spec(trials=8, parallelism=4), 9) == []


def _finished(asked, value=lambda p: -(p["x"] - 2) ** 2, state="complete"):
    return [{**t, "state": state, "value": value(t["params"]) if state == "complete" else None} for t in asked]


def test_asks_are_in_the_space_numbered_on_and_the_same_for_the_same_history():
    spec = _spec(parallelism=3)
    first = ask_trials([], spec, 3)
    assert [t["number"] for t in first] == [0, 1, 2] and first == ask_trials([], spec, 3)
    for trial in first:
        params = trial["params"]
        assert -5 <= params["x"] <= 5 and isinstance(params["units"], int) and 2 <= params["units"] <= 64
        assert params["activation"] in ("relu", "tanh")
    assert len({t["params"]["x"] for t in first}) == 3  # a round's asks differ (the constant liar)
    history = _finished(first)
    second = ask_trials(history, spec, 2)
    assert [t["number"] for t in second] == [3, 4] and second == ask_trials(history, spec, 2)
    assert second != ask_trials(_finished(first, value=lambda p: -p["x"]), spec, 2)  # another ranking, other asks


def test_later_rounds_learn_from_earlier_ones():
    spec = _spec(parallelism=4, seed=3)
    history: list = []
    for _ in range(6):
        history += _finished(ask_trials(history, spec, 4))
    late = [abs(t["params"]["x"] - 2) for t in history[-12:]]
    # x uniform on [-5, 5] (random search, and the first round) is on average 2.9 from the best x, 2
    assert sum(late) / len(late) < 2.0


def test_trials_of_another_search_space_are_kept_but_do_not_guide():
    spec = _spec()
    old = [{"number": 0, "params": {"depth": 3}, "state": "complete", "value": 1.0}]
    assert [t["number"] for t in ask_trials(old, spec, 2)] == [1, 2]


def test_the_best_trial_by_direction_and_the_earliest_of_equals():
    trials = [{"number": 0, "state": "complete", "value": 0.5, "params": {"x": 0}},
              {"number": 1, "state": "failed", "value": None, "error": "boom", "params": {"x": 1}},
              {"number": 2, "state": "complete", "value": 0.9, "params": {"x": 2}},
              {"number": 3, "state": "complete", "value": 0.9, "params": {"x": 3}}]
    assert best_trial(trials, _spec())["number"] == 2
    assert best_trial(trials, _spec(direction="minimize"))["number"] == 0
    assert best_hyperparameters({"best": trials[2]}, {"x": 9, "epochs": 3}) == {"x": 2, "epochs": 3}
    with pytest.raises(RuntimeError, match="no trial of study 's' completed; the first error: boom"):
        best_trial([trials[1]], _spec())


@pytest.mark.parametrize("returned, message", [
    (None, "run_fn returned NoneType; with tuning it must return its metrics"),
    ({"loss": 1.0}, r"run_fn returned no 'score' \(the tuning objective\); it returned \['loss'\]"),
    ({"score": float("nan")}, "the objective 'score' is nan"),
])
def test_what_run_fn_returns_must_hold_a_finite_objective(returned, message):
    with pytest.raises(ValueError, match=message):
        objective_value(returned, "score")


MODULE = '''
import json, os
def preprocessing_fn(inputs):
    return inputs
def run_fn(fn_args):
    hp = fn_args.hyperparameters
    if hp["activation"] == "tanh" and hp["x"] > 4:
        raise ValueError("diverged")
    tuning_dir = os.path.dirname(os.path.dirname(fn_args.serving_model_dir))
    os.makedirs(tuning_dir, exist_ok=True)
    with open(os.path.join(tuning_dir, "trials.log"), "a") as f:
        f.write(json.dumps({"number": fn_args.trial_number, "files": fn_args.train_files, "epochs": hp["epochs"]}) + "\\n")
    score = -(hp["x"] - 2) ** 2 - (hp["units"] - 16) ** 2 / 1000
    for epoch in range(3):  # as epoch_progress() reports a Keras trial's epochs
        if fn_args.pruning.report(epoch, {"score": score - 2 + epoch}):
            break
    return {"score": score, "note": "text is left out"}
'''


def _tune(tmp_path, spec, finished, run_id):
    module_path = tmp_path / "objective.py"
    module_path.write_text(MODULE)
    fn_args = FnArgs(train_files=(), eval_files=(), transform_output="", schema_path="", serving_model_dir="",
                     model_run_dir="", label="y", hyperparameters={"epochs": 3, "x": 0.0})
    path = study_file(str(tmp_path / "runs"), spec.study)
    out = tmp_path / f"{run_id}-summary.json"
    with TestPipeline() as p:
        files = p | "Files" >> beam.Create(["train-0.tfrecord"])
        summary = p | TuneHyperparameters(UserModule.from_spec(str(module_path)), fn_args, spec, path, finished,
                                          run_id, str(tmp_path / "runs" / run_id / "tuning"), files,
                                          p | "Eval" >> beam.Create(["eval-0.tfrecord"]), after={})
        _ = summary | beam.Map(lambda s: out.write_text(json.dumps(s)))
    return json.loads(out.read_text()), path


def test_tuning_runs_the_trials_in_rounds_saves_the_study_and_resumes_it(tmp_path):
    spec = _spec(trials=8, parallelism=4)
    summary, path = _tune(tmp_path, spec, [], "first")
    trials = summary["trials"]
    assert [t["number"] for t in trials] == list(range(8)) and summary["new_trials"] == 8
    assert load_study(path) == trials  # saved as the rounds finished
    for trial in trials:
        assert trial["run_id"] == "first" and trial["seconds"] >= 0 and trial["started"] <= trial["finished"]
        if trial["state"] == "complete":
            assert trial["value"] == -(trial["params"]["x"] - 2) ** 2 - (trial["params"]["units"] - 16) ** 2 / 1000
            assert trial["metrics"] == {"score": trial["value"]}
            assert trial["intermediate"] == {str(e): trial["value"] - 2 + e for e in range(3)}  # saved as JSON
        else:
            assert trial["error"] == "ValueError: diverged" and trial["value"] is None
    best = max((t for t in trials if t["state"] == "complete"), key=lambda t: t["value"])
    assert summary["best"] == best
    log = [json.loads(line) for line in open(tmp_path / "runs" / "first" / "tuning" / "trials.log")]
    assert sorted(entry["number"] for entry in log) == [t["number"] for t in trials if t["state"] == "complete"]
    assert all(entry["files"] == ["train-0.tfrecord"] and entry["epochs"] == 3 for entry in log)
    assert not any(os.path.exists(tmp_path / "runs" / "first" / "tuning" / f"trial-{n}" / "model") for n in range(8))

    resumed, _ = _tune(tmp_path, _spec(trials=11, parallelism=4), load_study(path), "second")
    assert resumed["new_trials"] == 3 and [t["number"] for t in resumed["trials"]] == list(range(11))
    assert resumed["trials"][:8] == trials and {t["run_id"] for t in resumed["trials"][8:]} == {"second"}
    assert load_study(path) == resumed["trials"]

    done, _ = _tune(tmp_path, _spec(trials=11, parallelism=4), load_study(path), "third")
    assert done["new_trials"] == 0 and done["trials"] == resumed["trials"] and done["best"] == resumed["best"]


def _ran(number, curve, state="complete"):
    return {"number": number, "params": {"x": float(number), "units": 8, "activation": "relu"}, "state": state,
            "value": curve[-1] if state == "complete" else None, "intermediate": dict(enumerate(curve))}


def test_a_trial_worse_than_the_earlier_trials_median_stops_after_its_first_epoch():
    finished = [_ran(n, [0.5, 0.7, 0.9]) for n in range(5)]
    pruning = Pruning(_spec(), finished, {"x": 1.5, "units": 8, "activation": "relu"})
    assert not pruning.report(0, {"score": 0.1})  # the first epoch is never judged
    assert not pruning.report(1, {"loss": 3.0})  # no objective this epoch: nothing to judge
    assert pruning.report(1, {"score": 0.2}) and pruning.pruned_at == 1
    assert pruning.intermediate == {0: 0.1, 1: 0.2}
    better = Pruning(_spec(), finished, {"x": 1.5, "units": 8, "activation": "relu"})
    assert not any(better.report(epoch, {"score": v}) for epoch, v in enumerate([0.6, 0.8, 0.95]))
    minimizing = Pruning(_spec(direction="minimize"), finished, {"x": 1.5, "units": 8, "activation": "relu"})
    assert not minimizing.report(0, {"score": 0.1}) and not minimizing.report(1, {"score": 0.2})


def test_no_trial_stops_early_before_five_ran_to_the_end_or_without_pruning():
    params = {"x": 1.5, "units": 8, "activation": "relu"}
    few = [_ran(n, [0.5, 0.7, 0.9]) for n in range(4)] + [_ran(4, [0.5, 0.7], state="pruned")]
    assert not Pruning(_spec(), few, params).report(1, {"score": 0.0})
    enough = [_ran(n, [0.5, 0.7, 0.9]) for n in range(5)]
    off = Pruning(_spec(pruning="none"), enough, params)
    assert not off.report(1, {"score": 0.0}) and off.intermediate == {1: 0.0}
    assert [t["number"] for t in ask_trials(few, _spec(), 2)] == [5, 6]  # pruned trials guide the sampler too
