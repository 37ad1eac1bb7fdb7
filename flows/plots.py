"""Plots a run keeps with its MLflow record: the fold timeline.

matplotlib is imported inside the functions and drawn on its Agg canvas through ``Figure`` (no
pyplot), so nothing changes the caller's backend and no display is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scribbles.core import Dataset, Fold
from scribbles.core.data import read_times

#: Colours of a row's role in a fold: neither side (a gap, an embargo, outside the window), train, valid.
ROLE_COLOURS = {"gap / unused": "#d9d9d9", "train": "#4c78a8", "valid": "#f58518"}
MAX_FOLDS_SHOWN = 60


def prepare_plots() -> None:
    """Import what the plots here draw with (matplotlib's ``Figure``: about 0.4 s), ahead of the first."""
    from matplotlib.figure import Figure  # noqa: F401
    from matplotlib.patches import Patch  # noqa: F401


def fold_timeline(dataset: Dataset, folds: list[Fold], path: Path, splitter: str = "", bins: int = 600) -> Path:
    """Folds on y, rows (or time, when the data has a time column) on x, coloured train/valid/gap.

    Rows are binned along x; a bin's colour mixes the roles of its rows in proportion, so a grouped
    split shows as an even tint and a time split as clean blocks; an empty bin continues the one
    before it. Writes a PNG to ``path``.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    n = len(dataset)
    shown = folds[:MAX_FOLDS_SHOWN]
    groups = _whole_groups(dataset, shown, splitter)
    if groups is not None:
        return _group_timeline(dataset, folds, shown, groups, path, splitter)
    times = read_times(dataset) if dataset.time and dataset.time in dataset.frame.columns else None
    x = times.values if times is not None else np.arange(n)
    low, high = (int(x.min()), int(x.max())) if n else (0, 1)
    span = max(high - low, 1)
    bin_of_row = np.minimum((x - low) * (bins / span), bins - 1).astype(np.int64) if n else x
    colours = np.array([_rgb(c) for c in ROLE_COLOURS.values()])
    image = np.ones((len(shown), bins, 3))
    for row, fold in enumerate(shown):
        role = np.zeros(n, dtype=np.int64)
        role[fold.train] = 1
        role[fold.valid] = 2
        counts = np.bincount(bin_of_row * 3 + role, minlength=bins * 3).reshape(bins, 3).astype(float)
        total = counts.sum(axis=1, keepdims=True)
        filled = total[:, 0] > 0
        image[row, filled] = (counts[filled] / total[filled]) @ colours
        # A bin without rows (a night, a weekend) shows the role of the rows before it: intervals read whole.
        previous = np.maximum.accumulate(np.where(filled, np.arange(bins), 0))
        image[row] = image[row, previous]

    figure = Figure(figsize=(10, 1.2 + 0.35 * len(shown)), dpi=100)
    axes = figure.add_subplot()
    if times is not None and times.is_datetime:
        import matplotlib.dates as mdates
        import pandas as pd

        start, end = mdates.date2num(pd.Timestamp(low)), mdates.date2num(pd.Timestamp(high))
        axes.xaxis_date()
        axes.set_xlabel(f"time ({dataset.time})")
    else:
        start, end = low, high
        axes.set_xlabel(f"{dataset.time}" if times is not None else "row")
    axes.imshow(image, aspect="auto", interpolation="nearest", extent=(start, end, len(shown) - 0.5, -0.5))
    axes.set_yticks(range(len(shown)), [str(f.index) for f in shown])
    axes.set_ylabel("fold")
    more = f" (first {len(shown)} of {len(folds)})" if len(folds) > len(shown) else ""
    axes.set_title(f"fold timeline: {splitter or 'splitter'}, {len(folds)} folds{more}")
    axes.legend(
        handles=[Patch(color=c, label=label) for label, c in ROLE_COLOURS.items()],
        loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(shown) > 3 else -0.45), ncol=3, frameon=False,
    )
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png")
    return path


def _whole_groups(dataset: Dataset, folds: list[Fold], splitter: str) -> np.ndarray | None:
    """Each row's group code when no fold has a group on both sides (a grouped split); else None.

    A time splitter keeps its time axis even when its groups stay whole: there, time is the point.
    """
    import pandas as pd

    if not dataset.group or dataset.group not in dataset.frame.columns or not folds or "time" in splitter:
        return None
    codes, _ = pd.factorize(dataset.frame[dataset.group], sort=True)
    codes = np.where(codes < 0, codes.max() + 1, codes)
    for fold in folds:
        if np.intersect1d(np.unique(codes[fold.train]), np.unique(codes[fold.valid])).size:
            return None
    return codes


def _group_timeline(dataset: Dataset, folds: list[Fold], shown: list[Fold], codes: np.ndarray, path: Path,
                    splitter: str) -> Path:
    """Folds on y, groups on x (ordered by the first fold that validates them): a cell per group and fold."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    n_groups = int(codes.max()) + 1
    roles = np.zeros((len(shown), n_groups), dtype=np.int64)
    for row, fold in enumerate(shown):
        roles[row, np.unique(codes[fold.train])] = 1
        roles[row, np.unique(codes[fold.valid])] = 2
    first_valid = np.where((roles == 2).any(0), (roles == 2).argmax(0), len(shown))
    order = np.lexsort((np.arange(n_groups), first_valid))
    colours = np.array([_rgb(c) for c in ROLE_COLOURS.values()])
    image = colours[roles[:, order]]
    figure = Figure(figsize=(10, 1.6 + 0.35 * len(shown)), dpi=100)
    axes = figure.add_subplot()
    axes.imshow(image, aspect="auto", interpolation="nearest")
    names = pd_names(dataset, codes)
    if n_groups <= 40:
        axes.set_xticks(range(n_groups), [names[g] for g in order], rotation=90, fontsize=7)
    axes.set_xlabel(f"groups ({dataset.group}, {n_groups}), ordered by the fold that validates them")
    axes.set_yticks(range(len(shown)), [str(f.index) for f in shown])
    axes.set_ylabel("fold")
    more = f" (first {len(shown)} of {len(folds)})" if len(folds) > len(shown) else ""
    axes.set_title(f"fold assignment by group: {splitter or 'splitter'}, {len(folds)} folds{more}")
    axes.legend(handles=[Patch(color=c, label=label) for label, c in ROLE_COLOURS.items()],
                loc="lower center", bbox_to_anchor=(0.5, 1.08), ncol=3, frameon=False)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png")
    return path


def pd_names(dataset: Dataset, codes: np.ndarray) -> list[str]:
    """The group names by code (codes from a sorted factorisation of the group column)."""
    import pandas as pd

    _, uniques = pd.factorize(dataset.frame[dataset.group], sort=True)
    return [str(u) for u in uniques] + ["(missing)"] * (int(codes.max()) + 1 - len(uniques))


def _rgb(colour: str) -> tuple[float, float, float]:
    return tuple(int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))  # type: ignore[return-value]
