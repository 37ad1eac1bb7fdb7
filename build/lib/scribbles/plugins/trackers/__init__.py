"""Trackers: ``mlflow`` logs a parent run per experiment run and a nested run per fold.

mlflow and matplotlib are imported inside functions, so the registry loads where only torch is installed.
"""

from __future__ import annotations

from collections.abc import Iterable

from scribbles.core import Technique, hookimpl

from .mlflow_tracker import MlflowTracker, tracking_uri

__all__ = ["MlflowTracker", "tracking_uri"]


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [MlflowTracker]
