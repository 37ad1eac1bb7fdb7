"""Sweeps: the trials of a ``sweep:`` section, each a complete config validated before any work."""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any

import numpy as np

from .config import ExperimentConfig, RandomRange, SweepConfig, parse_config, set_path
from .errors import ConfigError


def check_search(sweep: SweepConfig) -> None:
    """ConfigError naming the field for a sweep section that mixes engines or misses what its engine needs."""
    engines = [name for name in ("grid", "random", "optuna") if getattr(sweep, name) is not None]
    if len(engines) != 1:
        raise ConfigError("give exactly one of sweep.grid, sweep.random and sweep.optuna (with sweep.space)",
                          "sweep")
    if sweep.optuna is None:
        if sweep.space is not None:
            raise ConfigError("sweep.space is the space of an Optuna study; add sweep.optuna: {sampler: tpe, "
                              "trials: 20} or use sweep.random", "sweep.space")
        if sweep.parallel != 1:
            raise ConfigError("sweep.parallel runs Optuna trials at once; add sweep.optuna or remove it",
                              "sweep.parallel")
        return
    if not sweep.space:
        raise ConfigError("an Optuna sweep needs sweep.space: dotted path -> a list of choices or "
                          "{low, high, log}, e.g. space: {train.lr: {low: 1.0e-4, high: 0.1, log: true}}",
                          "sweep.space")
    if sweep.trials is not None:
        raise ConfigError("an Optuna sweep takes its budget from sweep.optuna.trials; remove sweep.trials",
                          "sweep.trials")
    for path, spec in sweep.space.items():
        where = f"sweep.space.{path}"
        if isinstance(spec, list):
            if not spec:
                raise ConfigError("no values listed; give at least one", where)
            continue
        if sweep.optuna.sampler == "grid":
            raise ConfigError("the grid sampler takes a list of values, not a range; list them "
                              "(e.g. [0.001, 0.01]) or use sampler tpe", where)
        if spec.high < spec.low:
            raise ConfigError(f"high {spec.high} is below low {spec.low}", where)
        if spec.log and spec.low <= 0:
            raise ConfigError(f"a log range needs low > 0 (got {spec.low})", where)
        if spec.integer and (spec.low != int(spec.low) or spec.high != int(spec.high)):
            raise ConfigError("an integer range needs whole low and high", where)
    if sweep.optuna.trials is None and sweep.optuna.sampler != "grid":
        raise ConfigError(f"the {sweep.optuna.sampler} sampler needs sweep.optuna.trials (how many trials), "
                          "e.g. trials: 20", "sweep.optuna.trials")


def grid_size(sweep: SweepConfig) -> int:
    """How many combinations an Optuna grid sweep's space holds."""
    assert sweep.space is not None
    return math.prod(len(spec) if isinstance(spec, list) else 1 for spec in sweep.space.values())


def representatives(config: ExperimentConfig) -> list[tuple[dict[str, Any], ExperimentConfig]]:
    """Configs to validate before any work: every trial of a grid or random sweep; for an Optuna sweep
    (whose trials are drawn while it runs) each choice and each range's ends, the other paths at their
    first choice or low end."""
    sweep = config.sweep
    if sweep is None or sweep.optuna is None:
        return trials(config)
    check_search(sweep)
    assert sweep.space is not None
    first = {path: spec[0] if isinstance(spec, list) else _end(spec, spec.low) for path, spec in sweep.space.items()}
    assignments = [first]
    for path, spec in sweep.space.items():
        values = spec if isinstance(spec, list) else [_end(spec, spec.low), _end(spec, spec.high)]
        assignments.extend({**first, path: value} for value in values[1:] if value != first[path])
    return [(assignment, trial_config(config, assignment)) for assignment in assignments]


def _end(spec: RandomRange, value: float) -> Any:
    return round(value) if spec.integer else float(value)


def trial_config(config: ExperimentConfig, assignment: dict[str, Any]) -> ExperimentConfig:
    """``config`` without its sweep, the assignment's dotted paths set; a ConfigError names the trial."""
    raw = config.model_dump(mode="json", exclude={"sweep"})
    for path, value in assignment.items():
        set_path(raw, path, value, f"sweep path {path}: ")
    return parse_config(raw, f"sweep trial {label(assignment)}")


def _values(sweep: SweepConfig) -> list[dict[str, Any]]:
    """The trials' assignments, dotted path -> value, in a deterministic order."""
    check_search(sweep)
    if sweep.optuna is not None:
        raise ConfigError("an Optuna sweep draws its trials while it runs (flows/search.py)", "sweep.optuna")
    if sweep.grid is not None:
        for path, options in sweep.grid.items():
            if not options:
                raise ConfigError("no values listed; give at least one", f"sweep.grid.{path}")
        if sweep.trials is not None:
            raise ConfigError("sweep.trials is for random sweeps; a grid runs every combination", "sweep.trials")
        paths = list(sweep.grid)
        return [dict(zip(paths, combo, strict=True)) for combo in itertools.product(*sweep.grid.values())]
    assert sweep.random is not None
    if sweep.trials is None:
        raise ConfigError("a random sweep needs sweep.trials (how many draws), e.g. trials: 8", "sweep.trials")
    rng = np.random.default_rng(sweep.seed)
    trials = []
    for _ in range(sweep.trials):
        trial: dict[str, Any] = {}
        for path, spec in sweep.random.items():
            trial[path] = _draw(rng, spec, f"sweep.random.{path}")
        trials.append(trial)
    return trials


def _draw(rng: np.random.Generator, spec: list[Any] | RandomRange, where: str) -> Any:
    if isinstance(spec, list):
        if not spec:
            raise ConfigError("no values listed; give at least one", where)
        return spec[int(rng.integers(len(spec)))]
    if spec.high < spec.low:
        raise ConfigError(f"high {spec.high} is below low {spec.low}", where)
    if spec.log:
        if spec.low <= 0:
            raise ConfigError(f"a log range needs low > 0 (got {spec.low})", where)
        value = math.exp(rng.uniform(math.log(spec.low), math.log(spec.high)))
    else:
        value = float(rng.uniform(spec.low, spec.high))
    return round(value) if spec.integer else float(f"{value:.6g}")


def label(assignment: dict[str, Any]) -> str:
    """``train.lr=0.01 model.hidden=[64]``: how a trial is named in runs and tables."""
    return " ".join(f"{path}={value}" for path, value in assignment.items())


def trials(config: ExperimentConfig) -> list[tuple[dict[str, Any], ExperimentConfig]]:
    """Every trial of the config's sweep as (assignment, config without the sweep); one trial when none.

    Each trial's config is validated here, so a bad path or value in the sweep fails before any work,
    naming the trial.
    """
    if config.sweep is None:
        return [({}, config)]
    base = config.model_dump(mode="json", exclude={"sweep"})
    out = []
    for assignment in _values(config.sweep):
        raw = copy.deepcopy(base)
        where = f"sweep trial {label(assignment)}"
        for path, value in assignment.items():
            set_path(raw, path, value, f"sweep path {path}: ")
        out.append((assignment, parse_config(raw, where)))
    return out
