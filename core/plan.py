"""Resolve a config against the registry: every technique built and checked before any work."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .config import DEFAULT_LOSS, DEFAULT_METRICS, ExperimentConfig
from .contracts import (
    DataSource,
    Loss,
    Metric,
    Model,
    Preprocessor,
    Splitter,
    Strategy,
    Technique,
    Tracker,
    TTATransform,
)
from .data import DEFAULT_STEPS, with_repeats
from .errors import ConfigError
from .evaluation import Compose
from .registry import Registry


@dataclass
class Plan:
    """A config resolved into technique instances, plus the resolved config with every default."""

    config: ExperimentConfig
    resolved: dict[str, Any]
    data: DataSource
    splitter: Splitter
    model: Model
    loss: Loss
    strategy: Strategy
    tta: list[TTATransform] = field(default_factory=list)
    merge: str = "mean"
    metrics: list[Metric] = field(default_factory=list)
    trackers: list[Tracker] = field(default_factory=list)
    #: The preprocessing steps, fitted per fold on its train rows (``scribbles.core.data``, ``DEFAULT_STEPS``).
    preprocess: list[Preprocessor] = field(default_factory=list)

    @property
    def experiment(self) -> str:
        return self.config.experiment or "default"

    def techniques(self) -> list[Technique]:
        """Every technique instance of the run, in config order."""
        return [self.data, self.splitter, self.model, self.loss, self.strategy, *self.tta, *self.metrics,
                *self.trackers, *self.preprocess]


def _split_ref(section: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    fields = dict(section)
    return str(fields.pop("name")), fields


def _build(registry: Registry, family: str, section: dict[str, Any], where: str) -> Technique:
    if "name" not in section:
        raise ConfigError(f"needs a 'name' (the {family} to use); names: {', '.join(registry.names(family))}", where)
    name, fields = _split_ref(section)
    return registry.create(family, name, field=where, **fields)


def _dump(technique: Technique) -> dict[str, Any]:
    return {"name": technique.name, **technique.params.model_dump(mode="json")}


def _check_outputs(model: Model, user: Loss | Metric, where: str) -> None:
    """Refuse a loss or metric that reads a model output the model does not produce."""
    needs = {user.needs} if isinstance(user.needs, str) else set(user.needs)
    missing = sorted(needs - set(model.outputs))
    if missing:
        raise ConfigError(
            f"{user.family} '{user.name}' reads the model output {', '.join(repr(m) for m in missing)}, "
            f"which model '{model.name}' does not produce (it gives {', '.join(sorted(model.outputs))}); "
            f"pick a model that does or another {user.family}",
            where,
        )


#: TTA merges that make sense for real-valued predictions.
REGRESSION_MERGES = ("mean", "median")


def _check_task(task: str, technique: Model | Loss | Metric, where: str) -> None:
    """Refuse a model, loss or metric that does not serve ``task``."""
    if task not in technique.tasks:
        others = "classification" if task == "regression" else "regression"
        raise ConfigError(f"{technique.family} '{technique.name}' is for {others}, and this config's task is {task}; "
                          f"pick a {technique.family} for {task} or set `task: {others}`", where)


def _build_transform(
    registry: Registry, section: dict[str, Any], where: str, kind: str, shape: tuple[int, ...]
) -> TTATransform:
    """A TTA transform checked against the data kind and row shape; a compose gets its parts built."""
    if not isinstance(section, dict) or "name" not in section:
        raise ConfigError("needs a 'name' (the transform to use)", where)
    transform = _build(registry, "tta", section, where)
    if isinstance(transform, Compose):
        parts = transform.params.transforms
        return transform.bind(
            [_build_transform(registry, part, f"{where}.transforms.{j}", kind, shape) for j, part in enumerate(parts)]
        )
    if kind not in transform.kinds:
        raise ConfigError(
            f"transform '{transform.name}' does not fit {kind} data; it fits {', '.join(sorted(transform.kinds))}",
            f"{where}.name",
        )
    problem = transform.check(shape) if shape else None
    if problem:
        raise ConfigError(f"transform '{transform.name}': {problem}{channels_last_hint(shape)}", where)
    return transform


def channels_last_hint(shape: tuple[int, ...]) -> str:
    """A hint when an image's ``data.shape`` looks channels-last ([height, width, channels], as PIL and
    TensorFlow give it): scribbles reads [channels, height, width], so the checks then see the wrong sizes."""
    if len(shape) == 3 and shape[-1] in (1, 3, 4) and shape[-1] < shape[0]:
        return (f" (data.shape {list(shape)} looks like [height, width, channels]; give [channels, height, width]: "
                f"[{shape[2]}, {shape[0]}, {shape[1]}])")
    return ""


def _dump_transform(transform: TTATransform) -> dict[str, Any]:
    if isinstance(transform, Compose):
        return {"name": transform.name, "transforms": [_dump_transform(part) for part in transform.parts]}
    return _dump(transform)


def resolve(config: ExperimentConfig, registry: Registry) -> Plan:
    """Every technique of ``config`` built from the registry; a ConfigError names the first bad field."""
    data = _build(registry, "data", config.data, "data")
    split_section = dict(config.split)
    repeats = split_section.pop("repeats", 1)
    splitter = with_repeats(_build(registry, "splitter", split_section, "split"), repeats)
    model = _build(registry, "model", config.model, "model")
    task = config.task
    loss = _build(registry, "loss", config.loss or {"name": DEFAULT_LOSS[task]}, "loss")
    _check_task(task, model, "model.name")
    _check_task(task, loss, "loss.name")
    if task == "regression" and splitter.stratified:
        raise ConfigError(f"splitter '{splitter.name}' keeps class proportions, which a regression target does not "
                          "have; use its unstratified counterpart (kfold, group_kfold)", "split.name")
    steps = DEFAULT_STEPS if config.preprocess is None else config.preprocess
    preprocess = [_build(registry, "preprocess", dict(step) if isinstance(step, dict) else {"name": step},
                         f"preprocess.{i}") for i, step in enumerate(steps)]
    kind = data.kind
    if kind not in model.kinds:
        raise ConfigError(
            f"model '{model.name}' does not take {kind} data; it takes {', '.join(sorted(model.kinds))}",
            "model.name",
        )
    chosen = config.train.strategy or model.default_strategy
    strategy = _build(registry, "strategy", dict(chosen) if isinstance(chosen, dict) else {"name": chosen},
                      "train.strategy")
    _check_outputs(model, loss, "loss.name")
    allowed = model.strategies
    if allowed is not None and strategy.name not in allowed:
        raise ConfigError(
            f"model '{model.name}' is trained by strategy {' or '.join(sorted(allowed))}, not "
            f"'{strategy.name}'; remove train.strategy to use the model's default",
            "train.strategy",
        )
    tta: list[TTATransform] = []
    merge = "mean"
    if config.evaluate.tta is not None:
        merge = config.evaluate.tta.merge
        if task == "regression" and merge not in REGRESSION_MERGES:
            raise ConfigError(f"merge '{merge}' combines class probabilities; a regression's TTA predictions merge "
                              f"by {' or '.join(REGRESSION_MERGES)}", "evaluate.tta.merge")
        shape = data.shape
        for i, section in enumerate(config.evaluate.tta.transforms):
            tta.append(_build_transform(registry, section, f"evaluate.tta.transforms.{i}", kind, shape))
    metrics = []
    for i, item in enumerate(config.evaluate.metrics or DEFAULT_METRICS[task]):
        section = {"name": item} if isinstance(item, str) else item
        metrics.append(_build(registry, "metric", section, f"evaluate.metrics.{i}"))
        _check_task(task, metrics[-1], f"evaluate.metrics.{i}")
        if metrics[-1].needs != "proba":
            _check_outputs(model, metrics[-1], f"evaluate.metrics.{i}")
    trackers = [
        _build(registry, "tracker", section, f"tracking.{i}") for i, section in enumerate(config.tracking)
    ]
    strategy.check(config.train, model)
    resolved = {
        "experiment": config.experiment,
        "task": config.task,
        "data": _dump(data),
        "split": {**_dump(splitter), **({"repeats": repeats} if repeats != 1 else {})},
        "preprocess": [_dump(step) for step in preprocess],
        "model": _dump(model),
        "loss": _dump(loss),
        # The name alone for a strategy without params: the cache keys of every run made before they existed.
        "train": {**config.train.model_dump(mode="json"),
                  "strategy": _dump(strategy) if type(strategy).Params.model_fields else strategy.name},
        "evaluate": {
            "tta": {
                **config.evaluate.tta.model_dump(mode="json"),
                "transforms": [_dump_transform(t) for t in tta],
            }
            if config.evaluate.tta is not None and tta
            else None,
            "metrics": [m.name for m in metrics],
        },
        "tracking": [_dump(t) for t in trackers],
        "plugins": config.plugins.model_dump(mode="json"),
    }
    return Plan(config, resolved, data, splitter, model, loss, strategy, tta, merge, metrics, trackers,
                preprocess=preprocess)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"model": {"d_model": 64}}`` -> ``{"model.d_model": "64"}``; lists become JSON."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{path}."))
        elif isinstance(value, list | tuple):
            flat[path] = json.dumps(value, default=str)
        else:
            flat[path] = "" if value is None else str(value)
    return flat
