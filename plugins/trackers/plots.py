"""Plots a tracker keeps with a run: learning curves per fold and confusion matrices.

matplotlib is imported inside the functions (the training core runs without it) and only its
object-oriented API is used, never pyplot: plots are drawn on the tracker's logging thread, and
pyplot's global state is not thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``[true, predicted]`` over class positions ``0 .. n_classes-1``."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return counts


def _figure(width: float, height: float):  # type: ignore[no-untyped-def]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_confusion(counts: np.ndarray, classes: Sequence[str], title: str, path: Path) -> Path:
    """A confusion matrix (rows: true class, columns: predicted), each cell with its count."""
    n = len(classes)
    figure = _figure(1.6 + 0.55 * n, 1.2 + 0.5 * n)
    ax = figure.add_subplot()
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(n), [str(c) for c in classes], rotation=45, ha="right")
    ax.set_yticks(range(n), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = counts.max() / 2 if counts.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if counts[i, j] > threshold else "black")
    figure.savefig(path, dpi=80)
    return path


def plot_learning_curves(histories: Mapping[int, Sequence[Mapping[str, float]]], title: str, path: Path) -> Path:
    """One panel per fold: every per-epoch series (train_loss, valid_loss, ...) against the epoch."""
    folds = sorted(histories)
    columns = min(len(folds), 3) or 1
    rows = max(1, -(-len(folds) // columns))
    figure = _figure(3.2 * columns, 2.4 * rows)
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True)
    for ax, fold in zip(axes.flat, folds, strict=False):
        history = histories[fold]
        for name in sorted({k for epoch in history for k in epoch}):
            points = [(e, m[name]) for e, m in enumerate(history) if name in m]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=name)
        ax.set_title(f"fold {fold}", fontsize=9)
        ax.set_xlabel("epoch")
    for ax in list(axes.flat)[len(folds):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    figure.suptitle(title)
    figure.savefig(path, dpi=80)
    return path
