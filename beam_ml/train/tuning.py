"""Hyperparameter search as part of the training graph: trials are elements, run in parallel on the workers.

The `tuning` option (`beam_ml.config.tuning`) names a study, an objective (a metric the module's `run_fn` returns),
a direction, a number of trials, a parallelism and a search space. The trials run in rounds of `parallelism`: each
round's parameters are asked of Optuna's TPE sampler (seeded; its first round, `parallelism` trials, samples at
random) given every finished trial of the study, with the constant liar for the trials asked in the same round, so
later rounds learn from earlier ones; the round's trials are spread over the workers (a Reshuffle), each calls
`run_fn` with the base hyperparameters updated by its parameters, and the round is saved to the study's file
(`<output_dir>/study-<study>.json`) before the next one is asked. A rerun with the same study continues it:
its finished trials count towards `trials` and inform the sampler. The best complete trial's parameters (over the
base `hyperparameters`) train the model that is evaluated and pushed; every trial (parameters, objective, state,
time, worker) is in the run record's `tuning` field.

A trial whose `run_fn` raises, returns no metrics or a non-finite objective is `failed` with the reason and the search
goes on; a study without a complete trial fails the run.

Early stopping (`pruning: median`, the default): a Keras trial reports its objective after every epoch (through
`fn_args.epoch_progress()`), and stops, `pruned`, when it is worse than the median of the earlier rounds' trials at
the same epoch (Optuna's MedianPruner, once the study has 5 trials that ran to the end, never at the first epoch).
A `run_fn` that does not train epoch by epoch (or passes no such callback) is never pruned.

Example::

    tuning = pbegin | "Tune" >> TuneHyperparameters(module, fn_args, spec, study_path, finished, run_id,
                                                      train_files, eval_files, after={"transform": transform_fn})
    # a singleton {"study", "objective", "direction", "trials": [...], "new_trials", "best": {...}}
"""
from __future__ import annotations

import dataclasses
import datetime
import math
import os
import socket
import time
from typing import Any, Optional, Sequence

import apache_beam as beam

from beam_ml.config.tuning import Parameter, TuningSpec
from beam_ml.core import fileutil
from beam_ml.core.console import progress_line
from beam_ml.core.lock import PathLock
from beam_ml.core.redact import clipped
from beam_ml.train import user_module
from beam_ml.train.trainer import FnArgs, set_seeds

PRUNING_STARTUP_TRIALS = 5  # complete trials the study needs before a trial is pruned (Optuna's default)
PRUNING_WARMUP_EPOCHS = 1  # a trial is never pruned at its first epoch


def load_study(path: str) -> list[dict]:
    """The finished trials of the study at `path`, oldest first; [] for a new study."""
    import json
    if not fileutil.exists(path):
        return []
    return json.loads(fileutil.read_text(path))["trials"]


def rounds(spec: TuningSpec, finished: int) -> list[int]:
    """How many trials each round asks for, given the trials the study has finished."""
    remaining = max(0, spec.trials - finished)
    return [min(spec.parallelism, remaining - start) for start in range(0, remaining, spec.parallelism)]


def _distribution(parameter: Parameter) -> Any:
    from optuna import distributions
    if parameter.choices is not None:
        return distributions.CategoricalDistribution(list(parameter.choices))
    if parameter.int:
        return distributions.IntDistribution(int(parameter.low), int(parameter.high), log=parameter.log,
                                             step=int(parameter.step or 1))
    return distributions.FloatDistribution(float(parameter.low), float(parameter.high), log=parameter.log,
                                           step=parameter.step)


def _study(finished: Sequence[dict], spec: TuningSpec, sampler: Any = None) -> tuple[Any, dict]:
    """An in-memory Optuna study holding the `finished` trials (those of this search space), and the space."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {p.name: _distribution(p) for p in spec.parameters}
    study = optuna.create_study(direction=spec.direction, sampler=sampler, pruner=optuna.pruners.MedianPruner(
        n_startup_trials=PRUNING_STARTUP_TRIALS, n_warmup_steps=PRUNING_WARMUP_EPOCHS))
    states = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
              "failed": optuna.trial.TrialState.FAIL}
    for trial in finished:
        try:
            study.add_trial(optuna.trial.create_trial(
                params=trial["params"], distributions=space, state=states[trial["state"]],
                value=trial["value"] if trial["state"] == "complete" else None,
                intermediate_values={int(step): v for step, v in (trial.get("intermediate") or {}).items()}))
        except ValueError:  # from an earlier search space: kept in the study, not a guide to this one
            continue
    return study, space


def ask_trials(finished: Sequence[dict], spec: TuningSpec, count: int) -> list[dict]:
    """`count` new trials ({"number", "params"}) from TPE given the `finished` ones: the same for the same history."""
    import optuna
    sampler = optuna.samplers.TPESampler(seed=spec.seed + len(finished), constant_liar=True,
                                         n_startup_trials=spec.parallelism)
    study, space = _study(finished, spec, sampler)
    first = max((t["number"] for t in finished), default=-1) + 1
    return [{"number": first + i, "params": study.ask(space).params} for i in range(count)]


class Pruning:
    """One trial's early stopping against the study's earlier trials (see the module docstring): `report(epoch,
    metrics)` notes the objective and says whether to stop; `intermediate` holds what was reported."""

    def __init__(self, spec: TuningSpec, finished: Sequence[dict], params: dict):
        self._spec, self._finished, self._params = spec, finished, params
        self._trial: Any = None
        self.intermediate: dict[int, float] = {}
        self.pruned_at: Optional[int] = None

    def report(self, epoch: int, metrics: dict) -> bool:
        if not _is_number(metrics.get(self._spec.objective)):
            return False
        value = float(metrics[self._spec.objective])
        self.intermediate[epoch] = value
        if self._spec.pruning == "none":
            return False
        if self._trial is None:
            study, space = _study(self._finished, self._spec)
            study.enqueue_trial(self._params)
            self._trial = study.ask(space)
        self._trial.report(value, epoch)
        if self._trial.should_prune():
            self.pruned_at = epoch
            return True
        return False


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def objective_value(metrics: Any, objective: str) -> float:
    """The objective from what `run_fn` returned; ValueError saying what is wrong."""
    if not isinstance(metrics, dict):
        raise ValueError(f"run_fn returned {type(metrics).__name__}; with tuning it must return its metrics as a "
                         f"dict, e.g. {{{objective!r}: 0.97}}")
    if objective not in metrics:
        raise ValueError(f"run_fn returned no {objective!r} (the tuning objective); it returned "
                         f"{sorted(metrics)}")
    value = float(metrics[objective])
    if not math.isfinite(value):
        raise ValueError(f"the objective {objective!r} is {value}")
    return value


class RunTrial(beam.DoFn):
    """Trains one trial (`run_fn` with the trial's parameters, in `<tuning_dir>/trial-<number>/`); emits its
    record. The trial's model is removed once its metrics are in: the chosen parameters train the model again."""

    def __init__(self, module: user_module.UserModule, fn_args: FnArgs, spec: TuningSpec, tuning_dir: str,
                 run_id: str):
        self._module = module
        self._fn_args = fn_args
        self._spec = spec
        self._tuning_dir = tuning_dir
        self._run_id = run_id

    def process(self, trial: dict, finished: list[dict], train_files: list[str], eval_files: list[str],
                **ready):  # `finished`: the earlier rounds' trials; `ready`: what the trials wait for
        import tensorflow as tf
        trial_dir = os.path.join(self._tuning_dir, f"trial-{trial['number']}")
        pruning = Pruning(self._spec, finished, trial["params"])
        fn_args = dataclasses.replace(
            self._fn_args, train_files=tuple(sorted(train_files)), eval_files=tuple(sorted(eval_files)),
            hyperparameters={**self._fn_args.hyperparameters, **trial["params"]},
            serving_model_dir=os.path.join(trial_dir, "model"), model_run_dir=os.path.join(trial_dir, "logs"),
            trial_number=trial["number"], pruning=pruning)
        record = {**trial, "run_id": self._run_id, "worker": f"{socket.gethostname()}:{os.getpid()}",
                  "started": _now()}
        start = time.perf_counter()
        try:
            set_seeds(fn_args.seed)
            metrics = self._module.load().run_fn(fn_args)
            value = objective_value(metrics, self._spec.objective)
            if pruning.pruned_at is None:
                record.update(state="complete", value=value)
            else:
                record.update(state="pruned", value=None, pruned_at_epoch=pruning.pruned_at + 1)  # counted from 1
            record["metrics"] = {k: float(v) for k, v in metrics.items() if _is_number(v)}
        except Exception as e:  # a bad region of the space (or a bug): recorded, and the search goes on
            record.update(state="failed", value=None, error=clipped(f"{type(e).__name__}: {e}"))
        record.update(intermediate=pruning.intermediate, seconds=round(time.perf_counter() - start, 3),
                      finished=_now())
        if tf.io.gfile.exists(fn_args.serving_model_dir):
            tf.io.gfile.rmtree(fn_args.serving_model_dir)
        yield record


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def best_trial(trials: Sequence[dict], spec: TuningSpec) -> dict:
    """The complete trial with the best objective (the earliest of equals); RuntimeError if none completed."""
    complete = [t for t in trials if t["state"] == "complete"]
    if not complete:
        errors = [t.get("error") for t in trials if t.get("error")]
        raise RuntimeError(f"tuning: no trial of study {spec.study!r} completed"
                           + (f"; the first error: {errors[0]}" if errors else ""))
    sign = -1 if spec.direction == "maximize" else 1
    return min(complete, key=lambda t: (sign * t["value"], t["number"]))


class SaveRound(beam.DoFn):
    """Adds a round's trials to the study (its file merged under a lock: another run's trials are kept) and emits
    every trial this run knows, for the next round's sampler."""

    def __init__(self, spec: TuningSpec, study_path: str, run_id: str, round_index: int, round_count: int):
        self._spec = spec
        self._study_path = study_path
        self._run_id = run_id
        self._round = (round_index, round_count)

    def process(self, new: list[dict], known: list[dict]):
        new = sorted(new, key=lambda t: t["number"])
        with PathLock(self._study_path + ".lock", owner=self._run_id, ttl_seconds=300, wait_seconds=120):
            on_disk = load_study(self._study_path)
            seen = {(t.get("run_id"), t["number"]) for t in on_disk}
            fileutil.write_json(self._study_path, {"study": self._spec.study, "trials": on_disk + [
                t for t in new if (t["run_id"], t["number"]) not in seen]})
        trials = [*known, *new]
        best = best_trial(trials, self._spec) if any(t["state"] == "complete" for t in trials) else None
        print(progress_line("tune", f"round {self._round[0] + 1}/{self._round[1]}: {len(new)} trials, "
                                    + (f"best {self._spec.objective} {best['value']:.4g} (trial {best['number']})"
                                       if best else "none complete")), flush=True)
        yield trials


def summary(trials: list[dict], spec: TuningSpec, new_trials: int) -> dict:
    """The run record's `tuning` field."""
    return {"study": spec.study, "objective": spec.objective, "direction": spec.direction,
            "new_trials": new_trials, "trials": trials, "best": best_trial(trials, spec)}


class TuneHyperparameters(beam.PTransform[beam.pvalue.PBegin, beam.PCollection[dict]]):
    """Runs the study's remaining trials (see the module docstring); outputs the singleton `summary`.

    Args:
      module, fn_args: as `beam_ml.train.trainer.TrainModel` takes them (fn_args.hyperparameters are the base).
      spec: the tuning option.
      study_path: the study's file (`beam_ml.core.layout.study_file`); `finished`: its trials when the graph is built.
      run_id, tuning_dir: this run, and where its trials train.
      train_files, eval_files, after: the transformed examples, and what the trials wait for.
    """

    def __init__(self, module: user_module.UserModule, fn_args: FnArgs, spec: TuningSpec, study_path: str,
                 finished: list[dict], run_id: str, tuning_dir: str, train_files: beam.PCollection,
                 eval_files: beam.PCollection, after: dict[str, beam.PCollection], min_ram: str = "4GB"):
        super().__init__()
        self._module, self._fn_args, self._spec = module, fn_args, spec
        self._study_path, self._finished, self._run_id, self._tuning_dir = study_path, finished, run_id, tuning_dir
        self._train_files, self._eval_files, self._after, self._min_ram = train_files, eval_files, after, min_ram

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[dict]:
        spec = self._spec
        sizes = rounds(spec, len(self._finished))
        trials = pbegin | "Study" >> beam.Create([self._finished])
        run_trial = RunTrial(self._module, self._fn_args, spec, self._tuning_dir, self._run_id)
        for index, count in enumerate(sizes):
            results = (trials
                       | f"Ask{index}" >> beam.FlatMap(ask_trials, spec, count)
                       | f"Spread{index}" >> beam.Reshuffle()
                       | f"Trial{index}" >> beam.ParDo(
                           run_trial, beam.pvalue.AsSingleton(trials), beam.pvalue.AsList(self._train_files),
                           beam.pvalue.AsList(self._eval_files),
                           **{k: beam.pvalue.AsList(v) for k, v in self._after.items()}
                       ).with_resource_hints(min_ram=self._min_ram)
                       | f"Gather{index}" >> beam.combiners.ToList())
            trials = results | f"Save{index}" >> beam.ParDo(
                SaveRound(spec, self._study_path, self._run_id, index, len(sizes)), beam.pvalue.AsSingleton(trials))
        return trials | "Summary" >> beam.Map(summary, spec, sum(sizes))


def best_hyperparameters(tuning: dict, base: dict) -> dict:
    """The hyperparameters the model trains with: `base` updated by the best trial's parameters."""
    return {**base, **tuning["best"]["params"]}


def write_hyperparameters(tuning: dict, base: dict, path: str) -> dict:
    """The tuned hyperparameters (`best_hyperparameters`), written to `path` (`RunLayout.hyperparameters_file`)
    with the study and the trial they come from; returns them."""
    hyperparameters = best_hyperparameters(tuning, base)
    fileutil.write_json(path, {"hyperparameters": hyperparameters, "study": tuning["study"],
                               "objective": tuning["objective"], "trials": len(tuning["trials"]),
                               "best_trial": tuning["best"]})
    return hyperparameters
