"""Row splitters: ``kfold``, ``stratified_kfold`` and ``shuffle`` (scikit-learn's folds, seeded)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scribbles.core import BadInput, Dataset, Fold, Seed, Splitter
from scribbles.core.data import class_codes

from .common import Params, Size, check_count, fold_dtype, folds_from_assignment, shuffle_sizes


class KFold(Splitter):
    """Consecutive (or shuffled) equal-size folds of rows; scikit-learn's KFold folds."""

    name = "kfold"

    class Params(Params):
        shuffle: bool = Field(False, description="shuffle rows before cutting the folds")
        seed: Seed = Field(0, description="seed of the shuffle")

    def split(self, dataset: Dataset) -> Iterator[Fold]:
        n, k = len(dataset), self.params.n_splits
        check_count(self.name, k, n, "rows")
        sizes = np.full(k, n // k)
        sizes[: n % k] += 1
        bounds = np.r_[0, np.cumsum(sizes)]
        if not self.params.shuffle:
            for index in range(k):
                start, stop = int(bounds[index]), int(bounds[index + 1])
                train = np.concatenate([np.arange(start), np.arange(stop, n)])
                yield Fold(index, train, np.arange(start, stop))
            return
        order = np.random.RandomState(self.params.seed).permutation(n)
        row_fold = np.empty(n, dtype=fold_dtype(k))
        row_fold[order] = np.repeat(np.arange(k, dtype=row_fold.dtype), sizes)
        yield from folds_from_assignment(row_fold, k)


class StratifiedKFold(Splitter):
    """Folds that keep each class's share of the rows; scikit-learn's StratifiedKFold folds."""

    name = "stratified_kfold"
    stratified = True

    class Params(Params):
        shuffle: bool = Field(False, description="shuffle within each class before cutting")
        seed: Seed = Field(0, description="seed of the shuffle")

    def split(self, dataset: Dataset) -> Iterator[Fold]:
        k = self.params.n_splits
        # Classes coded by first appearance, as scikit-learn does, so the folds are the same.
        codes, n_classes = class_codes(dataset, self.name, sort=False)
        counts = np.bincount(codes, minlength=n_classes)
        check_count(self.name, k, len(codes), "rows")
        if np.all(k > counts):
            raise BadInput(
                f"split.n_splits: {self.name} asks for {k} folds but every class has fewer rows "
                f"(largest {int(counts.max())}); lower n_splits"
            )
        if k > counts.min():
            warnings.warn(
                f"The least populated class in y has only {int(counts.min())} members, which is less than "
                f"n_splits={k}.",
                UserWarning,
                stacklevel=2,
            )
        # Rows sorted by class are dealt round robin: fold i gets positions i, i+k, ... of that order.
        # allocation[i, c] counts the positions p in class c's range [a, b) with p % k == i.
        ends = np.cumsum(counts)
        starts = ends - counts
        i = np.arange(k)[:, None]
        allocation = -((i - ends[None, :]) // k) - -((i - starts[None, :]) // k)
        rng = np.random.RandomState(self.params.seed)
        by_class = np.argsort(codes, kind="stable")
        row_fold = np.empty(len(codes), dtype=fold_dtype(k))
        for c in range(n_classes):
            fold_of_member = np.repeat(np.arange(k, dtype=row_fold.dtype), allocation[:, c])
            if self.params.shuffle:
                rng.shuffle(fold_of_member)
            row_fold[by_class[starts[c] : ends[c]]] = fold_of_member
        yield from folds_from_assignment(row_fold, k)


class Shuffle(Splitter):
    """Independent random train/valid draws of rows (scikit-learn's ShuffleSplit); seeded."""

    name = "shuffle"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        n_splits: int = Field(10, ge=1, description="number of draws")
        test_size: Size = Field(None, description="fraction or count of valid rows (default 0.1)")
        train_size: Size = Field(None, description="fraction or count of train rows (default: the rest)")
        seed: Seed = 0

    def split(self, dataset: Dataset) -> Iterator[Fold]:
        n = len(dataset)
        n_train, n_test = shuffle_sizes(n, self.params.test_size, self.params.train_size, 0.1, "rows")
        rng = np.random.RandomState(self.params.seed)
        for index in range(self.params.n_splits):
            order = rng.permutation(n)
            yield Fold(index, order[n_test : n_test + n_train], order[:n_test])
