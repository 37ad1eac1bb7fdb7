"""scribbles.core: the kernel that plugins and flows build on. Imports no prefect, mlflow or dvc.

The names below are imported on first use (PEP 562), so ``from scribbles.core import BadInput`` or
listing plugins does not import torch or pandas; ``from scribbles.core import Model`` imports the
module that defines it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ExperimentConfig, Seed, TrainConfig, Width, load_config
    from .context import (
        EpochContext,
        FoldContext,
        FoldEndContext,
        RunContext,
        RunEndContext,
        RunErrorContext,
    )
    from .contracts import (
        Dataset,
        DataSource,
        Fold,
        Loss,
        Metric,
        Model,
        ModelSpec,
        Preprocessor,
        Splitter,
        Strategy,
        Technique,
        Tracker,
        TrainResult,
        TTATransform,
        View,
    )
    from .errors import BadInput, ConfigError, LeakageError, PluginError, ScribblesError
    from .markers import FAMILIES, HOOK_API_VERSION, hookimpl, hookspec
    from .plan import Plan, resolve
    from .registry import Registry, create, default_registry, load_registry, registry_for
    from .run_store import RunStore, StoredRun
    from .stops import stops_deferred

_EXPORTS: dict[str, str] = {
    "ExperimentConfig": "config",
    "Seed": "config",
    "TrainConfig": "config",
    "Width": "config",
    "load_config": "config",
    "EpochContext": "context",
    "FoldContext": "context",
    "FoldEndContext": "context",
    "RunContext": "context",
    "RunEndContext": "context",
    "RunErrorContext": "context",
    "FAMILIES": "markers",
    "Dataset": "contracts",
    "DataSource": "contracts",
    "Fold": "contracts",
    "Loss": "contracts",
    "Metric": "contracts",
    "Model": "contracts",
    "ModelSpec": "contracts",
    "Preprocessor": "contracts",
    "Splitter": "contracts",
    "Strategy": "contracts",
    "Technique": "contracts",
    "Tracker": "contracts",
    "TrainResult": "contracts",
    "TTATransform": "contracts",
    "View": "contracts",
    "BadInput": "errors",
    "ConfigError": "errors",
    "LeakageError": "errors",
    "PluginError": "errors",
    "ScribblesError": "errors",
    "HOOK_API_VERSION": "markers",
    "hookimpl": "markers",
    "hookspec": "markers",
    "Plan": "plan",
    "resolve": "plan",
    "Registry": "registry",
    "create": "registry",
    "default_registry": "registry",
    "load_registry": "registry",
    "registry_for": "registry",
    "RunStore": "run_store",
    "StoredRun": "run_store",
    "stops_deferred": "stops",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        try:
            return importlib.import_module(f"{__name__}.{name}")  # a submodule: scribbles.core.training
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "FAMILIES",
    "HOOK_API_VERSION",
    "BadInput",
    "ConfigError",
    "DataSource",
    "Dataset",
    "EpochContext",
    "ExperimentConfig",
    "Fold",
    "FoldContext",
    "FoldEndContext",
    "LeakageError",
    "Loss",
    "Metric",
    "Model",
    "ModelSpec",
    "Plan",
    "PluginError",
    "Preprocessor",
    "Registry",
    "RunContext",
    "RunEndContext",
    "RunErrorContext",
    "RunStore",
    "ScribblesError",
    "Seed",
    "Splitter",
    "StoredRun",
    "Strategy",
    "TTATransform",
    "Technique",
    "Tracker",
    "TrainConfig",
    "TrainResult",
    "View",
    "Width",
    "create",
    "default_registry",
    "hookimpl",
    "hookspec",
    "load_config",
    "load_registry",
    "registry_for",
    "resolve",
    "stops_deferred",
]
