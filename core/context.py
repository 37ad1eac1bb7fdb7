"""The context objects passed to the lifecycle hooks.

Each hook takes one keyword-only context: adding a field here breaks no plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contracts import Fold


@dataclass
class RunContext:
    """One experiment run: its name, resolved config, flattened params and lineage tags."""

    experiment: str
    config: dict[str, Any]
    params: dict[str, str]
    tags: dict[str, str]
    data_version: str
    data_source: str
    data_rev: str | None
    n_folds: int
    run_name: str = ""
    #: Files every tracker should keep with the parent run (resolved config, fold report, plots).
    artifacts: dict[str, Path] = field(default_factory=dict)
    #: Where trackers say the run can be found, e.g. {"mlflow_run_id": "..."}; trackers fill it.
    links: dict[str, str] = field(default_factory=dict)


@dataclass
class FoldContext:
    """A fold about to be trained."""

    run: RunContext
    fold: Fold
    report: dict[str, Any]


@dataclass
class EpochContext:
    """The end of one training epoch of one fold."""

    run: RunContext
    fold_index: int
    epoch: int
    metrics: dict[str, float]


@dataclass
class FoldEndContext:
    """A fold trained and evaluated: final metrics with and without TTA."""

    run: RunContext
    fold_index: int
    metrics: dict[str, float]
    artifacts: dict[str, Path] = field(default_factory=dict)
    #: The trained model (a torch module taking raw features, or a scikit-learn estimator) and a few
    #: rows it takes, for trackers that keep the model with its signature and an input example.
    model: Any = None
    input_example: Any = None
    #: Valid-row targets and plain (no TTA) predictions as class positions, and the class labels.
    y_true: Any = None
    y_pred: Any = None
    classes: list[str] = field(default_factory=list)


@dataclass
class RunEndContext:
    """The run finished: fold means and standard deviations."""

    run: RunContext
    summary: dict[str, float]


@dataclass
class RunErrorContext:
    """The run stopped: ``status`` is FAILED for an error, KILLED for Ctrl-C or SIGTERM."""

    run: RunContext
    error: BaseException
    status: str = "FAILED"
