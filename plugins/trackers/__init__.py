"""Trackers: ``mlflow`` logs a parent run per experiment run and a nested run per fold.

mlflow and matplotlib are imported inside functions, so the registry loads where only torch is installed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from scribbles.core import Technique, hookimpl

from .mlflow_tracker import MlflowTracker, tracking_uri

__all__ = ["MlflowTracker", "tracking_uri"]

# MLflow warns, when a pyfunc PythonModel class is first defined (its own, on importing mlflow.pyfunc.model),
# that `Any` type hints go unvalidated: advice to that class's author, never actionable by a scribbles user.
# Every mlflow import of scribbles' is in this package, so the filter is in place before the first one; the
# message starts with a colour code, hence the leading ".*".
warnings.filterwarnings("ignore", message=".*Any type hint is inferred as AnyType", category=UserWarning)


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [MlflowTracker]
