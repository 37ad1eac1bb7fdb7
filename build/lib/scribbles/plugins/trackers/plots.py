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
    """Two confusion matrices side by side (rows: true class, columns: predicted): counts, and rates
    normalised per true class (each row sums to 1, its diagonal is the class's recall).

    Sized for MLflow's artifact viewer at its default width (about 1000 x 500 px for a few classes);
    the title sits above both panels, wrapped, so it is never cut off.
    """
    import textwrap

    counts = np.asarray(counts)
    n = len(classes)
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    side = max(4.2, 1.8 + 0.45 * n)
    figure = _figure(2 * side + 0.6, side + 0.9)
    figure.subplots_adjust(left=0.12, bottom=0.2, right=0.98, top=0.84, wspace=0.35)
    figure.suptitle("\n".join(textwrap.wrap(title, 90)), fontsize=11)
    labels = [str(c) for c in classes]
    for k, (values, what, text) in enumerate((
        (counts, "counts", lambda v: str(int(v))),
        (rates, "rate per true class (row sums to 1)", lambda v: f"{v:.2f}"),
    )):
        ax = figure.add_subplot(1, 2, k + 1)
        ax.imshow(values, cmap="Blues", vmin=0, vmax=max(float(values.max()), 1e-12) if values.size else 1)
        ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=9)
        ax.set_yticks(range(n), labels, fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(what, fontsize=10)
        threshold = values.max() / 2 if values.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, text(values[i, j]), ha="center", va="center", fontsize=9 if n <= 10 else 7,
                        color="white" if values[i, j] > threshold else "black")
    figure.savefig(path, dpi=100)
    return path


def plot_learning_curves(histories: Mapping[int, Sequence[Mapping[str, float]]], title: str, path: Path) -> Path:
    """Per-epoch losses of every fold on one axes: a colour per fold, train solid, valid dashed.

    When no fold has more than one epoch (a classic model, fitted in one pass), there is no curve to
    draw: the plot shows each fold's train and valid loss side by side instead.
    """
    if max((len(h) for h in histories.values()), default=0) <= 1:
        return _plot_one_pass(histories, title, path)
    figure = _figure(8.0, 4.5)
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
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.savefig(path, dpi=100)
    return path


def _plot_one_pass(histories: Mapping[int, Sequence[Mapping[str, float]]], title: str, path: Path) -> Path:
    """Train and valid loss per fold, as paired bars: the picture of a model fitted once per fold."""
    folds = sorted(histories)
    figure = _figure(8.0, 4.5)
    figure.subplots_adjust(left=0.12, bottom=0.13, right=0.84, top=0.9)
    ax = figure.add_subplot()
    x = np.arange(len(folds))
    for offset, name, colour in ((-0.2, "train_loss", "#4c78a8"), (0.2, "valid_loss", "#f58518")):
        values = [next((e[name] for e in histories[f] if name in e), np.nan) for f in folds]
        ax.bar(x + offset, values, width=0.4, color=colour, label=name.replace("_", " "))
    ax.set_xticks(x, [str(f) for f in folds])
    ax.set_xlabel("fold")
    ax.set_ylabel("loss after the one-pass fit")
    ax.set_title(f"{title} (one-pass fit, no epochs)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.savefig(path, dpi=100)
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
