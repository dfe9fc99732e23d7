"""The `tuning` option: a hyperparameter search run inside the training job (`beam_ml.train.tuning`).

    tuning:
      study: penguins-width          # trials are kept in <output_dir>/study-<study>.json; a rerun continues them
      objective: val_sparse_categorical_accuracy   # a metric run_fn returns
      direction: maximize            # or minimize
      trials: 8                      # trials in the study, those of earlier runs included
      parallelism: 4                 # trials run at the same time (one round), on as many workers
      seed: 0                        # the sampler's (default: the run's --seed)
      pruning: median                # or none: stop a trial whose epoch is worse than earlier trials' median
      search_space:
        learning_rate: {low: 0.001, high: 0.1, log: true}
        hidden_units: {low: 4, high: 64, int: true}
        activation: {choices: [relu, tanh]}

A parameter is a float range (`low`, `high`, optional `log`), an int range (`int: true`, optional `log`, `step`) or
a list of `choices` (strings, numbers or booleans).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional

from beam_ml.core.errors import ConfigError

DIRECTIONS = ("maximize", "minimize")
STUDY_NAME_REGEX = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
FIELDS = ("study", "objective", "direction", "trials", "parallelism", "seed", "pruning", "search_space")
PRUNINGS = ("median", "none")


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One search dimension: a float or int range, or choices."""

    name: str
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    int: bool = False
    step: Optional[float] = None
    choices: Optional[tuple] = None

    @classmethod
    def parse(cls, name: str, value: Any) -> "Parameter":
        where = f"search_space.{name}"
        if not isinstance(value, dict):
            raise ConfigError("tuning", f"{where}: give {{low, high[, log, int, step]}} or {{choices: [...]}}, "
                                        f"got {value!r}")
        if "choices" in value:
            choices = value["choices"]
            if set(value) != {"choices"} or not isinstance(choices, list) or not choices or \
                    not all(isinstance(c, (str, int, float, bool)) for c in choices) or \
                    len(set(map(repr, choices))) != len(choices):
                raise ConfigError("tuning", f"{where}: choices must be a non-empty list of distinct strings, "
                                            f"numbers or booleans, alone")
            return cls(name, choices=tuple(choices))
        unknown = set(value) - {"low", "high", "log", "int", "step"}
        if unknown or not {"low", "high"} <= set(value):
            raise ConfigError("tuning", f"{where}: a range needs low and high (and may have log, int, step), "
                                        f"got {sorted(value)}")
        low, high, is_int = value["low"], value["high"], bool(value.get("int", False))
        numbers = (int,) if is_int else (int, float)
        if not all(isinstance(v, numbers) and not isinstance(v, bool) for v in (low, high)) or not low < high:
            raise ConfigError("tuning", f"{where}: low < high, {'integers' if is_int else 'numbers'}, "
                                        f"got {low!r}, {high!r}")
        log = bool(value.get("log", False))
        if log and low <= 0:
            raise ConfigError("tuning", f"{where}: a log range needs low > 0, got {low!r}")
        step = value.get("step")
        if step is not None and (log or not isinstance(step, numbers) or isinstance(step, bool) or step <= 0):
            raise ConfigError("tuning", f"{where}: step must be a positive {'integer' if is_int else 'number'} "
                                        f"and not with log, got {step!r}")
        return cls(name, low=low, high=high, log=log, int=is_int, step=step)


@dataclasses.dataclass(frozen=True)
class TuningSpec:
    """A validated `tuning` option."""

    study: str
    objective: str
    direction: str
    trials: int
    parallelism: int
    seed: int
    parameters: tuple[Parameter, ...]
    pruning: str = "median"

    @classmethod
    def parse(cls, value: dict, default_seed: int) -> Optional["TuningSpec"]:
        """The spec of a `tuning` option value, None for `{}` (no tuning); ConfigError("tuning", ...) naming the
        offending field."""
        if not value:
            return None
        if not isinstance(value, dict):
            raise ConfigError("tuning", f"must be a JSON object, got {value!r}")
        unknown = sorted(set(value) - set(FIELDS))
        if unknown:
            raise ConfigError("tuning", f"unknown fields {unknown}; known: {', '.join(FIELDS)}")
        for name in ("study", "objective", "search_space"):
            if name not in value:
                raise ConfigError("tuning", f"{name} is required")
        if not isinstance(value["study"], str) or not re.match(STUDY_NAME_REGEX, value["study"]):
            raise ConfigError("tuning", f"study must be a name of letters, digits, '_', '.' and '-', "
                                        f"got {value['study']!r}")
        if not isinstance(value["objective"], str) or not value["objective"]:
            raise ConfigError("tuning", "objective must name a metric that run_fn returns")
        direction = value.get("direction", "maximize")
        if direction not in DIRECTIONS:
            raise ConfigError("tuning", f"direction must be one of {DIRECTIONS}, got {direction!r}")
        counts = {name: value.get(name, default) for name, default in (("trials", 8), ("parallelism", 4))}
        for name, count in counts.items():
            if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10_000:
                raise ConfigError("tuning", f"{name} must be an integer from 1 to 10000, got {count!r}")
        seed = value.get("seed", default_seed)
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2 ** 31:
            raise ConfigError("tuning", f"seed must be an integer in [0, 2**31), got {seed!r}")
        pruning = value.get("pruning", "median")
        if pruning not in PRUNINGS:
            raise ConfigError("tuning", f"pruning must be one of {PRUNINGS}, got {pruning!r}")
        space = value["search_space"]
        if not isinstance(space, dict) or not space:
            raise ConfigError("tuning", "search_space must be a non-empty object of parameter name to its range "
                                        "or choices")
        return cls(study=value["study"], objective=value["objective"], direction=direction,
                   trials=counts["trials"], parallelism=counts["parallelism"], seed=seed,
                   parameters=tuple(Parameter.parse(name, space[name]) for name in space), pruning=pruning)
