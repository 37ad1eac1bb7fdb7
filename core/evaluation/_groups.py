"""Per-group results: each metric on each group's valid rows, and the worst group's value.

A fold's average can hide a group (a subject, a site) on which the model fails. With a group column,
every fold reports its metrics per group and ``{metric}_worst_group``: the lowest value over the groups
for a metric where greater is better, the highest for a loss, over the groups where the metric is
defined (a group of one class has no ROC AUC). Plain predictions only (no TTA), and only metrics on
probabilities (a reconstruction metric has no per-group meaning here).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import metric_names as naming
from ..contracts import Metric


def by_group(metrics: Sequence[Metric], y_true: np.ndarray, proba: np.ndarray,
             groups: np.ndarray) -> tuple[pd.DataFrame, dict[str, float]]:
    """A table (one row per group: ``group``, ``rows``, one column per metric) and the worst values.

    ``groups``: the group of each valid row, aligned with ``y_true`` and ``proba``.
    """
    scored = [m for m in metrics if m.needs == "proba"]
    codes, names = pd.factorize(pd.Series(groups), sort=True)
    rows: list[dict[str, Any]] = []
    for code, name in enumerate(names):
        mask = codes == code
        row: dict[str, Any] = {"group": name.item() if isinstance(name, np.generic) else name,
                               "rows": int(mask.sum())}
        with warnings.catch_warnings():
            # A group whose valid rows hold one class is common (a subject doing one activity): scikit-learn
            # warns per group ("A single label was found"; undefined metrics), which the run printed to the user.
            warnings.simplefilter("ignore", UserWarning)
            for metric in scored:
                row[metric.name] = metric.compute(y_true[mask], proba[mask])
        rows.append(row)
    table = pd.DataFrame(rows, columns=["group", "rows", *(m.name for m in scored)])
    if scored:  # worst group first, by the first metric
        table = table.sort_values(scored[0].name, ascending=scored[0].greater_is_better, kind="stable")
    worst = {}
    for metric in scored:
        values = table[metric.name].to_numpy(dtype=float)
        values = values[np.isfinite(values)]  # a metric a group cannot have (ROC AUC of one class) is left out
        if len(values):
            worst[naming.worst_group(metric.name)] = float(values.min() if metric.greater_is_better else values.max())
    return table, worst


def write_groups(table: pd.DataFrame, folder: Path) -> Path:
    """``group_metrics.csv`` in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "group_metrics.csv"
    table.to_csv(path, index=False)
    return path
