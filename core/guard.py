"""The leakage guard: every fold of every splitter passes it before any training starts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .contracts import Dataset, Fold, Splitter
from .errors import LeakageError


def parse_gap(gap: int | str | None) -> int | pd.Timedelta:
    """A gap is a row count (int) or a duration string such as ``"7D"`` or ``"12h"``."""
    if gap is None or gap == "":
        return 0
    if isinstance(gap, int | np.integer):
        return int(gap)
    try:
        return pd.Timedelta(str(gap))
    except ValueError:
        raise ValueError(f"gap {gap!r} is neither a row count nor a duration like '7D'") from None


def check_fold(dataset: Dataset, fold: Fold, splitter: Splitter) -> None:
    """Raise LeakageError naming the splitter, the fold and what leaked."""
    where = f"splitter '{splitter.name}', fold {fold.index}"
    if len(fold.train) == 0 or len(fold.valid) == 0:
        raise LeakageError(f"{where}: empty {'train' if len(fold.train) == 0 else 'valid'} side")
    both = np.intersect1d(fold.train, fold.valid)
    if len(both):
        raise LeakageError(f"{where}: {len(both)} rows on both sides, e.g. row {int(both[0])}")
    frame = dataset.frame
    if "group" in splitter.guards and dataset.group:
        groups = frame[dataset.group].to_numpy()
        shared = np.intersect1d(groups[fold.train], groups[fold.valid])
        if len(shared):
            raise LeakageError(
                f"{where}: {len(shared)} groups of '{dataset.group}' on both sides, e.g. {shared[0]!r}"
            )
    if "time" in splitter.guards:
        _check_time(dataset, fold, splitter, where)


def _check_time(dataset: Dataset, fold: Fold, splitter: Splitter, where: str) -> None:
    gap = parse_gap(splitter.time_gap())
    if dataset.time:
        times = pd.to_datetime(dataset.frame[dataset.time]).to_numpy()
        last_train, first_valid = times[fold.train].max(), times[fold.valid].min()
        if isinstance(gap, pd.Timedelta):
            ok = last_train + gap.to_timedelta64() < first_valid
        else:
            # A row gap counts distinct timestamps between the two sides.
            between = np.unique(times[(times > last_train) & (times < first_valid)])
            ok = last_train < first_valid and len(between) >= gap
        if not ok:
            raise LeakageError(
                f"{where}: train ends at {pd.Timestamp(last_train)} but valid starts at "
                f"{pd.Timestamp(first_valid)} (gap {splitter.time_gap()!r})"
            )
    else:
        steps = gap if isinstance(gap, int) else 0
        if fold.train.max() + steps >= fold.valid.min():
            raise LeakageError(
                f"{where}: train row {int(fold.train.max())} is not {steps} rows before valid row "
                f"{int(fold.valid.min())}"
            )


def fold_report(dataset: Dataset, fold: Fold) -> dict[str, Any]:
    """Sizes, group counts and time ranges of one fold (logged and printed)."""
    report: dict[str, Any] = {"fold": fold.index, "train_rows": len(fold.train), "valid_rows": len(fold.valid)}
    frame = dataset.frame
    if dataset.group:
        groups = frame[dataset.group].to_numpy()
        report["train_groups"] = len(np.unique(groups[fold.train]))
        report["valid_groups"] = len(np.unique(groups[fold.valid]))
    if dataset.time:
        times = pd.to_datetime(frame[dataset.time])
        for side, rows in (("train", fold.train), ("valid", fold.valid)):
            report[f"{side}_start"] = str(times.iloc[rows].min())
            report[f"{side}_end"] = str(times.iloc[rows].max())
    return report
