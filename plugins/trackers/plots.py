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

    # Fixed margins, no constrained layout: the layout engine cost most of a plot's time (0.3-1.5 s).
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def plot_confusion(counts: np.ndarray, classes: Sequence[str], title: str, path: Path) -> Path:
    """A confusion matrix (rows: true class, columns: predicted), each cell with its count."""
    n = len(classes)
    figure = _figure(1.4 + 0.42 * n, 1.5 + 0.42 * n)
    figure.subplots_adjust(left=0.3, bottom=0.3, right=0.97, top=0.9)
    ax = figure.add_subplot()
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(n), [str(c) for c in classes], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), [str(c) for c in classes], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    threshold = counts.max() / 2 if counts.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if counts[i, j] > threshold else "black")
    figure.savefig(path, dpi=80)
    return path


def plot_learning_curves(histories: Mapping[int, Sequence[Mapping[str, float]]], title: str, path: Path) -> Path:
    """Per-epoch losses of every fold on one axes: a colour per fold, train solid, valid dashed.

    When no fold has more than one epoch (a classic model, fitted in one pass), there is no curve to
    draw: the plot shows each fold's train and valid loss side by side instead.
    """
    if max((len(h) for h in histories.values()), default=0) <= 1:
        return _plot_one_pass(histories, title, path)
    figure = _figure(6.0, 3.8)
    figure.subplots_adjust(left=0.12, bottom=0.13, right=0.84, top=0.9)
    ax = figure.add_subplot()
    from matplotlib import colormaps

    colours = colormaps["tab10"]
    for k, fold in enumerate(sorted(histories)):
        history = histories[fold]
        for name, style in (("train_loss", "-"), ("valid_loss", "--")):
            values = [epoch[name] for epoch in history if name in epoch]
            if values:
                ax.plot(range(len(values)), values, style, color=colours(k % 10), marker="." if len(values) == 1
                        else None, label=f"fold {fold}" if name == "train_loss" else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (solid: train, dashed: valid)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.savefig(path, dpi=80)
    return path


def _plot_one_pass(histories: Mapping[int, Sequence[Mapping[str, float]]], title: str, path: Path) -> Path:
    """Train and valid loss per fold, as paired bars: the picture of a model fitted once per fold."""
    folds = sorted(histories)
    figure = _figure(6.0, 3.8)
    figure.subplots_adjust(left=0.12, bottom=0.13, right=0.84, top=0.9)
    ax = figure.add_subplot()
    x = np.arange(len(folds))
    for offset, name, colour in ((-0.2, "train_loss", "#4c78a8"), (0.2, "valid_loss", "#f58518")):
        values = [next((e[name] for e in histories[f] if name in e), np.nan) for f in folds]
        ax.bar(x + offset, values, width=0.4, color=colour, label=name.replace("_", " "))
    ax.set_xticks(x, [str(f) for f in folds])
    ax.set_xlabel("fold")
    ax.set_ylabel("loss after the one-pass fit")
    ax.set_title(f"{title} (one-pass fit, no epochs)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.savefig(path, dpi=80)
    return path


def plot_residuals(true: np.ndarray, predicted: np.ndarray, title: str, path: Path) -> Path:
    """A regression's residuals (true minus predicted) against the predictions, with the zero line."""
    figure = _figure(6.0, 3.8)
    figure.subplots_adjust(left=0.14, bottom=0.13, right=0.97, top=0.9)
    ax = figure.add_subplot()
    ax.scatter(predicted, true - predicted, s=6, alpha=0.5, color="#4c78a8")
    ax.axhline(0.0, color="#f58518", linewidth=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("residual (true - predicted)")
    ax.set_title(title, fontsize=9)
    figure.savefig(path, dpi=80)
    return path
