"""Resolve a config against the registry: every technique built and checked before any work."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .config import ExperimentConfig
from .contracts import (
    DataSource,
    Loss,
    Metric,
    Model,
    Splitter,
    Strategy,
    Technique,
    Tracker,
    TTATransform,
)
from .errors import ConfigError
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

    @property
    def experiment(self) -> str:
        return self.config.experiment or "default"


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


def resolve(config: ExperimentConfig, registry: Registry) -> Plan:
    """Every technique of ``config`` built from the registry; a ConfigError names the first bad field."""
    data = _build(registry, "data", config.data, "data")
    splitter = _build(registry, "splitter", config.split, "split")
    model = _build(registry, "model", config.model, "model")
    loss = _build(registry, "loss", config.loss, "loss")
    kind = getattr(data.params, "kind", "tabular")
    if kind not in model.kinds:
        raise ConfigError(
            f"model '{model.name}' does not take {kind} data; it takes {', '.join(sorted(model.kinds))}",
            "model.name",
        )
    strategy_name = config.train.strategy or getattr(model, "default_strategy", "single")
    strategy = registry.create("strategy", strategy_name, field="train.strategy")
    tta: list[TTATransform] = []
    merge = "mean"
    if config.evaluate.tta is not None:
        merge = config.evaluate.tta.merge
        for i, section in enumerate(config.evaluate.tta.transforms):
            where = f"evaluate.tta.transforms.{i}"
            if "name" not in section:
                raise ConfigError("needs a 'name' (the transform to use)", where)
            transform = _build(registry, "tta", section, where)
            if kind not in transform.kinds:
                raise ConfigError(
                    f"transform '{transform.name}' does not fit {kind} data; it fits "
                    f"{', '.join(sorted(transform.kinds))}",
                    f"{where}.name",
                )
            tta.append(transform)
    metrics = []
    for i, item in enumerate(config.evaluate.metrics):
        section = {"name": item} if isinstance(item, str) else item
        metrics.append(_build(registry, "metric", section, f"evaluate.metrics.{i}"))
    trackers = [
        _build(registry, "tracker", section, f"tracking.{i}") for i, section in enumerate(config.tracking)
    ]
    check = getattr(strategy, "check", None)
    if check is not None:
        check(config.train, model)
    resolved = {
        "experiment": config.experiment,
        "data": _dump(data),
        "split": _dump(splitter),
        "model": _dump(model),
        "loss": _dump(loss),
        "train": {**config.train.model_dump(mode="json"), "strategy": strategy.name},
        "evaluate": {
            "tta": {"transforms": [_dump(t) for t in tta], "merge": merge} if tta else None,
            "metrics": [m.name for m in metrics],
        },
        "tracking": [_dump(t) for t in trackers],
        "plugins": config.plugins.model_dump(mode="json"),
    }
    return Plan(config, resolved, data, splitter, model, loss, strategy, tta, merge, metrics, trackers)


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
