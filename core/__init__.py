"""scribbles.core: the kernel that plugins and flows build on. Imports no prefect, mlflow or dvc."""

from __future__ import annotations

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
    FAMILIES,
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
from .markers import HOOK_API_VERSION, hookimpl, hookspec
from .plan import Plan, resolve
from .registry import Registry, create, default_registry, load_registry, registry_for

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
    "ScribblesError",
    "Seed",
    "Splitter",
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
]
