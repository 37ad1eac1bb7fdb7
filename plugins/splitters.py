"""Validation splitters: ``kfold``, ``group_kfold`` and ``time_series``.

Implemented with NumPy on positions, so they need no scikit-learn, and ``as_sklearn()`` hands any of
them to scikit-learn's model-selection tools.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scribbles.core import BadInput, Dataset, Fold, Splitter, Technique, hookimpl
from scribbles.core.guard import parse_gap


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_splits: int = Field(5, ge=2)


def _check_count(what: str, available: int, n_splits: int, name: str) -> None:
    if n_splits > available:
        raise BadInput(f"split.n_splits: {name} asks for {n_splits} folds but the data has {available} {what}")


class KFold(Splitter):
    """Consecutive (or shuffled) equal-size folds of rows; scikit-learn's KFold semantics."""

    name = "kfold"

    class Params(_Params):
        shuffle: bool = False
        seed: int = 0

    def split(self, dataset: Dataset) -> Iterator[Fold]:
        n = len(dataset)
        _check_count("rows", n, self.params.n_splits, self.name)
        order = np.arange(n)
        if self.params.shuffle:
            order = np.random.RandomState(self.params.seed).permutation(n)
        sizes = np.full(self.params.n_splits, n // self.params.n_splits)
        sizes[: n % self.params.n_splits] += 1
        start = 0
        for index, size in enumerate(sizes):
            valid = order[start : start + size]
            mask = np.ones(n, dtype=bool)
            mask[valid] = False
            yield Fold(index, np.flatnonzero(mask), valid)
            start += size


class GroupKFold(Splitter):
    """Every group on one side; groups dealt largest first to the lightest fold (deterministic)."""

    name = "group_kfold"
    guards = frozenset({"group"})

    class Params(_Params):
        pass

    def split(self, dataset: Dataset) -> Iterator[Fold]:
        if not dataset.group:
            raise BadInput(f"split.name: {self.name} needs data.group, the column that names each group")
        groups = dataset.frame[dataset.group].to_numpy()
        unique, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
        _check_count("groups", len(unique), self.params.n_splits, self.name)
        fold_of_group = np.empty(len(unique), dtype=np.int64)
        load = np.zeros(self.params.n_splits)
        # Stable sort on -count keeps ties in group order, so the folds never depend on hashing.
        for g in np.argsort(-counts, kind="stable"):
            lightest = int(np.argmin(load))
            fold_of_group[g] = lightest
            load[lightest] += counts[g]
        row_fold = fold_of_group[inverse]
        for index in range(self.params.n_splits):
            yield Fold(index, np.flatnonzero(row_fold != index), np.flatnonzero(row_fold == index))


class TimeSeries(Splitter):
    """Later blocks validate on earlier ones (expanding window); by the time column when there is one."""

    name = "time_series"
    guards = frozenset({"time"})

    class Params(_Params):
        gap: int | str = Field(0, description="rows (distinct timestamps) or a duration like '7D'")
        test_size: int | None = Field(None, ge=1)
        max_train_size: int | None = Field(None, ge=1)

    def split(self, dataset: Dataset) -> Iterator[Fold]:
        gap = parse_gap(self.params.gap)
        if dataset.time:
            times = pd.to_datetime(dataset.frame[dataset.time]).to_numpy()
            unique, inverse = np.unique(times, return_inverse=True)
        else:
            unique, inverse = np.arange(len(dataset)), np.arange(len(dataset))
        n = len(unique)
        n_folds = self.params.n_splits + 1
        test_size = self.params.test_size or n // n_folds
        if isinstance(gap, pd.Timedelta):
            if not dataset.time:
                raise BadInput("split.gap: a duration gap needs data.time; give a row count instead")
            row_gap = 0
        else:
            row_gap = gap
        if n_folds > n or n - row_gap - test_size * self.params.n_splits <= 0:
            raise BadInput(
                f"split: {self.name} with n_splits={self.params.n_splits}, test_size={test_size}, "
                f"gap={self.params.gap!r} leaves no training data for {n} time steps"
            )
        for index, test_start in enumerate(range(n - self.params.n_splits * test_size, n, test_size)):
            train_end = test_start - row_gap
            if isinstance(gap, pd.Timedelta):
                train_end = int(np.searchsorted(unique, unique[test_start] - gap.to_timedelta64(), "left"))
            train_start = 0
            if self.params.max_train_size and train_end > self.params.max_train_size:
                train_start = train_end - self.params.max_train_size
            train_steps = np.arange(train_start, train_end)
            valid_steps = np.arange(test_start, test_start + test_size)
            if len(train_steps) == 0:
                raise BadInput(f"split: fold {index} of {self.name} has no training data; lower gap")
            yield Fold(index, _rows_at(inverse, train_steps), _rows_at(inverse, valid_steps))


def _rows_at(inverse: np.ndarray, steps: np.ndarray) -> np.ndarray:
    mask = np.zeros(inverse.max() + 1, dtype=bool)
    mask[steps] = True
    return np.flatnonzero(mask[inverse])


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [KFold, GroupKFold, TimeSeries]
