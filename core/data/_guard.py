"""The leakage guard: every fold of every splitter, built-in or third-party, passes it before training.

Checks, for each fold: positions inside the data and both sides non-empty; no row on both sides;
for splitters with the ``group`` guard, no group on both sides; for the ``time`` guard, every train
time plus the splitter's gap before every valid time. A failure is a ``LeakageError`` (exit 1) that
names the splitter, the fold and what leaked.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from ._columns import Times, column_codes, parse_span, read_times, shared_codes
from ..contracts import Dataset, Fold, Splitter
from ..errors import BadInput, LeakageError


def parse_gap(gap: int | str | None) -> int | pd.Timedelta:
    """A gap is a row count (int) or a duration string such as ``"7D"`` or ``"12h"``."""
    return parse_span(gap, "split.gap")


class FoldGuard:
    """The checks for one dataset and splitter; group codes and times are read once for all folds."""

    def __init__(self, dataset: Dataset, splitter: Splitter) -> None:
        self.dataset = dataset
        self.splitter = splitter
        self.n = len(dataset)
        self.groups: np.ndarray | None = None
        self.times: Times | None = None
        self.gap: int | pd.Timedelta = 0
        frame = dataset.frame
        if "group" in splitter.guards and dataset.group and dataset.group in frame.columns:
            # Inside guarded_folds these are the splitter's own codes, not a second factorisation.
            codes, count = column_codes(frame, dataset.group)
            # Missing groups (a third-party splitter may not refuse them) count as one more group.
            self.groups = np.where(codes < 0, count, codes) if (codes < 0).any() else codes
        if "time" in splitter.guards:
            try:
                self.gap = parse_gap(splitter.time_gap())
            except ValueError as exc:
                raise BadInput(str(exc)) from None
            if dataset.time and dataset.time in frame.columns:
                self.times = read_times(dataset)

    def check(self, fold: Fold) -> None:
        """Raise LeakageError naming the splitter, the fold and what leaked."""
        where = f"splitter '{self.splitter.name}', fold {fold.index}"
        for side, rows in (("train", fold.train), ("valid", fold.valid)):
            if len(rows) == 0:
                raise LeakageError(f"{where}: empty {side} side")
            if rows[0] < 0 or rows[-1] >= self.n:
                bad = int(rows[0] if rows[0] < 0 else rows[-1])
                raise LeakageError(f"{where}: {side} row {bad} is outside the data (rows 0..{self.n - 1})")
        # A mask instead of np.intersect1d: O(rows), no sort.
        in_train = np.zeros(self.n, dtype=bool)
        in_train[fold.train] = True
        both = fold.valid[in_train[fold.valid]]
        if len(both):
            raise LeakageError(f"{where}: {len(both)} rows on both sides, e.g. row {int(both[0])}")
        if self.groups is not None:
            self._check_groups(fold, where)
        if "time" in self.splitter.guards:
            self._check_time(fold, where)

    def _check_groups(self, fold: Fold, where: str) -> None:
        assert self.groups is not None
        train_groups = np.zeros(int(self.groups.max()) + 1, dtype=bool)
        train_groups[self.groups[fold.train]] = True
        shared_rows = fold.valid[train_groups[self.groups[fold.valid]]]
        if len(shared_rows):
            column = self.dataset.group
            shared = np.unique(self.groups[shared_rows])
            example = self.dataset.frame[column].iloc[int(shared_rows[0])]
            example = example.item() if isinstance(example, np.generic) else example
            raise LeakageError(
                f"{where}: {len(shared)} groups of '{column}' on both sides, e.g. {example!r} "
                f"(valid row {int(shared_rows[0])})"
            )

    def _check_time(self, fold: Fold, where: str) -> None:
        gap, shown = self.gap, self.splitter.time_gap()
        if self.times is None:
            steps = gap if isinstance(gap, int) else 0
            last, first = int(fold.train.max()), int(fold.valid.min())
            if last + steps >= first:
                raise LeakageError(
                    f"{where}: train row {last} is not more than {steps} rows before valid row {first} "
                    f"(gap {shown!r})"
                )
            return
        times = self.times
        train_steps, valid_steps = times.steps[fold.train], times.steps[fold.valid]
        last_step, first_step = int(train_steps.max()), int(valid_steps.min())
        last, first = int(times.unique[last_step]), int(times.unique[first_step])
        if isinstance(gap, pd.Timedelta):
            ok = last + times.span(gap, "split.gap") < first
        else:
            # A gap in rows counts the distinct timestamps between the two sides.
            ok = last_step + gap < first_step
        if not ok:
            raise LeakageError(
                f"{where}: train ends at {times.label(last)} but valid starts at {times.label(first)} "
                f"(gap {shown!r}): train must end more than the gap before valid starts"
            )


def check_fold(dataset: Dataset, fold: Fold, splitter: Splitter) -> None:
    """Raise LeakageError naming the splitter, the fold and what leaked."""
    FoldGuard(dataset, splitter).check(fold)


def check_folds(dataset: Dataset, folds: Iterable[Fold], splitter: Splitter) -> list[Fold]:
    """Every fold through the guard (columns read once); returns them as a list."""
    with shared_codes():  # a lazy splitter factorises the group column here, and the guard reuses it
        folds = list(folds)
        if not folds:
            raise LeakageError(f"splitter '{splitter.name}' made no folds")
        guard = FoldGuard(dataset, splitter)
    for fold in folds:
        guard.check(fold)
    return folds


def guarded_folds(splitter: Splitter, dataset: Dataset) -> list[Fold]:
    """``splitter.split(dataset)``, every fold checked by the guard before anyone trains on it."""
    with shared_codes():  # the group column is factorised once, for the splitter and the guard
        return check_folds(dataset, splitter.split(dataset), splitter)


def fold_report(dataset: Dataset, fold: Fold, times: Times | None = None) -> dict[str, Any]:
    """Sizes, group counts and time ranges of one fold (logged and printed)."""
    report: dict[str, Any] = {"fold": fold.index, "train_rows": len(fold.train), "valid_rows": len(fold.valid)}
    frame = dataset.frame
    if dataset.group and dataset.group in frame.columns:
        groups = frame[dataset.group]
        report["train_groups"] = int(groups.iloc[fold.train].nunique())
        report["valid_groups"] = int(groups.iloc[fold.valid].nunique())
    if dataset.time and dataset.time in frame.columns:
        times = times or read_times(dataset)
        for side, rows in (("train", fold.train), ("valid", fold.valid)):
            values = times.values[rows]
            report[f"{side}_start"] = times.label(values.min()) if len(values) else ""
            report[f"{side}_end"] = times.label(values.max()) if len(values) else ""
    return report
