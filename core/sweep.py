"""Sweeps: the trials of a ``sweep:`` section, each a complete config validated before any work."""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any

import numpy as np

from .config import ExperimentConfig, RandomRange, SweepConfig, parse_config
from .errors import ConfigError


def _values(sweep: SweepConfig) -> list[dict[str, Any]]:
    """The trials' assignments, dotted path -> value, in a deterministic order."""
    if (sweep.grid is None) == (sweep.random is None):
        raise ConfigError("give exactly one of sweep.grid and sweep.random", "sweep")
    if sweep.grid is not None:
        for path, options in sweep.grid.items():
            if not options:
                raise ConfigError(f"sweep.grid.{path} lists no values; give at least one", f"sweep.grid.{path}")
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
            raise ConfigError(f"{where} lists no values; give at least one", where)
        return spec[int(rng.integers(len(spec)))]
    if spec.high < spec.low:
        raise ConfigError(f"{where}: high {spec.high} is below low {spec.low}", where)
    if spec.log:
        if spec.low <= 0:
            raise ConfigError(f"{where}: a log range needs low > 0 (got {spec.low})", where)
        value = math.exp(rng.uniform(math.log(spec.low), math.log(spec.high)))
    else:
        value = float(rng.uniform(spec.low, spec.high))
    return round(value) if spec.integer else float(f"{value:.6g}")


def set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested mapping, creating sections that are missing."""
    parts = path.split(".")
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parts[: depth + 1])} is {child!r}, not a section", path)
        node = child
    node[parts[-1]] = value


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
            set_path(raw, path, value)
        out.append((assignment, parse_config(raw, where)))
    return out
