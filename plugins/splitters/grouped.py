"""Group splitters: every group (a subject, a car) on one side only.

``group_kfold``, ``stratified_group_kfold``, ``group_shuffle`` and ``leave_one_group_out`` give
scikit-learn's folds for the same arguments (seed for random_state); groups are factorised once by a
hash table and the rest is vectorised over group codes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scribbles.core import BadInput, Dataset, Fold, Seed, Splitter
from scribbles.core.data import class_codes, group_codes

from .common import Params, Size, check_count, fold_dtype, folds_from_assignment, lightest_first, shuffle_sizes


class GroupKFold(Splitter):
    """K folds with every group on one side, balanced in rows (largest group to the lightest fold)."""

    name = "group_kfold"
    guards = frozenset({"group"})

    class Params(Params):
        shuffle: bool = Field(False, description="deal shuffled groups into folds instead of balancing rows")
        seed: Seed = Field(0, description="seed of the shuffle")

    def split(self, dataset: Dataset) -> Iterator[Fold]:
        k = self.params.n_splits
        codes, n_groups = group_codes(dataset, self.name)
        check_count(self.name, k, n_groups, "groups")
        group_fold = np.empty(n_groups, dtype=fold_dtype(k))
        if self.params.shuffle:
            order = np.random.RandomState(self.params.seed).permutation(n_groups)
            sizes = np.full(k, n_groups // k)
            sizes[: n_groups % k] += 1
            group_fold[order] = np.repeat(np.arange(k), sizes)
        else:
            rows_per_group = np.bincount(codes, minlength=n_groups)
            # Largest groups first; among equals, scikit-learn's order (a reversed stable sort).
            order = np.argsort(rows_per_group, kind="stable")[::-1]
            group_fold[order] = lightest_first(rows_per_group[order], k)
        yield from folds_from_assignment(group_fold[codes], k)


class StratifiedGroupKFold(Splitter):
    """Group k-fold whose valid folds keep the class shares of the whole (greedy, like scikit-learn's).

    The folds are scikit-learn's wherever those are valid. scikit-learn's greedy assignment can leave a
    fold without any group although there are at least as many groups as folds (4 groups, 4 folds:
    groups [0,0,0,0,1,2,2,3,3], y [1,1,1,1,0,1,1,0,0] gives an empty fold in scikit-learn 1.9); there,
    and only there, each empty fold takes the smallest group of the fold holding the most groups, so
    that every fold validates on something (one group per fold when groups == folds).
    """

    name = "stratified_group_kfold"
    stratified = True
    guards = frozenset({"group"})

    class Params(Params):
        shuffle: bool = Field(False, description="shuffle groups before the greedy assignment")
        seed: Seed = Field(0, description="seed of the shuffle")

    def split(self, dataset: Dataset) -> Iterator[Fold]:
        k = self.params.n_splits
        classes, n_classes = class_codes(dataset, self.name)
        codes, n_groups = group_codes(dataset, self.name)
        counts = np.bincount(codes * n_classes + classes, minlength=n_groups * n_classes).reshape(n_groups, n_classes)
        class_rows = counts.sum(axis=0)  # rows per class, from the group counts rather than another pass
        if np.all(k > class_rows):
            raise BadInput(
                f"split.n_splits: {self.name} asks for {k} folds but every class has fewer rows "
                f"(largest {int(class_rows.max())}); lower n_splits"
            )
        if k > class_rows.min():
            warnings.warn(
                f"The least populated class in y has only {int(class_rows.min())} members, which is less "
                f"than n_splits={k}.",
                UserWarning,
                stacklevel=2,
            )
        check_count(self.name, k, n_groups, "groups")
        counts = counts.astype(np.float64)
        if self.params.shuffle:
            perm = np.arange(n_groups)
            np.random.RandomState(self.params.seed).shuffle(perm)
            counts = counts[perm]
            inverse = np.empty_like(perm)
            inverse[perm] = np.arange(n_groups)
            codes = inverse[codes]
        # Groups with the most uneven class mix first, as scikit-learn does.
        order = np.argsort(-np.std(counts, axis=1), kind="stable")
        group_fold = _most_even_fold(counts, order, class_rows, k)
        _fill_empty_folds(group_fold, counts.sum(axis=1), k)
        yield from folds_from_assignment(group_fold.astype(fold_dtype(k))[codes], k)


def _most_even_fold(counts: np.ndarray, order: np.ndarray, class_rows: np.ndarray, k: int) -> np.ndarray:
    """Each group, in ``order``, goes to the fold that leaves the class shares most even across folds.

    "Even" is scikit-learn's measure: the mean over classes of the standard deviation across folds of
    each fold's share of the class; ties (np.isclose) go to the fold with fewer rows. scikit-learn's
    choice can turn on the last bit of a float, so all k candidate placements are scored in one
    (k, k, classes) array with numpy's own operations in numpy's order (``_var``, then ``_mean``): the
    folds are scikit-learn's. Call overhead, not arithmetic, is the cost, so buffers are reused and
    only what a group changes is recomputed: the shares of the folds as they are (``shares``) change in
    one row per group, and only the k "group added to fold i" rows are divided anew (the same
    operands, so the same quotients as dividing everything).
    """
    n_classes = counts.shape[1]
    fold_counts = np.zeros((k, n_classes))
    shares = np.zeros((k, n_classes))  # fold_counts / class_rows
    fold_rows = [0.0] * k  # row counts are whole numbers, so float sums are exact in any order
    candidates = np.empty((k, k, n_classes))  # candidates[i]: the shares with the group in fold i
    placed = candidates.reshape(k * k, n_classes)[:: k + 1]  # a view of every candidates[i, i]
    with_group = np.empty((k, n_classes))
    mean = np.empty((k, 1, n_classes))
    spread = np.empty((k, n_classes))
    evals = np.empty(k)
    add, divide, sqrt = np.add, np.divide, np.sqrt
    group_fold = np.empty(len(counts), dtype=np.int64)
    inf = math.inf
    counts_of = list(counts)
    rows_of = counts.sum(axis=1).tolist()
    for group in order.tolist():
        added = counts_of[group]
        np.copyto(candidates, shares)
        add(fold_counts, added, out=with_group)
        divide(with_group, class_rows, out=placed)
        add.reduce(candidates, axis=1, keepdims=True, out=mean)
        divide(mean, k, out=mean)
        np.subtract(candidates, mean, out=candidates)
        np.multiply(candidates, candidates, out=candidates)
        add.reduce(candidates, axis=1, out=spread)
        divide(spread, k, out=spread)
        sqrt(spread, out=spread)
        add.reduce(spread, axis=1, out=evals)
        divide(evals, n_classes, out=evals)  # np.mean over classes
        best, best_eval, best_rows = 0, inf, inf
        for i, value in enumerate(evals.tolist()):
            rows = fold_rows[i]
            if value < best_eval or (abs(value - best_eval) <= 1e-8 + 1e-5 * abs(best_eval) and rows < best_rows):
                best, best_eval, best_rows = i, value, rows
        fold_counts[best] = with_group[best]
        divide(with_group[best], class_rows, out=shares[best])
        fold_rows[best] += rows_of[group]
        group_fold[group] = best
    return group_fold


def _fill_empty_folds(group_fold: np.ndarray, rows_of: np.ndarray, k: int) -> None:
    """Give every empty fold the smallest group of the fold with the most groups (in place).

    Needs at least ``k`` groups (``check_count``), so a fold with two or more groups is always there.
    A split without empty folds is left exactly as it is.
    """
    per_fold = np.bincount(group_fold, minlength=k)
    for empty in np.flatnonzero(per_fold == 0).tolist():
        donor = int(np.argmax(per_fold))
        members = np.flatnonzero(group_fold == donor)
        moved = members[int(np.argmin(rows_of[members]))]
        group_fold[moved] = empty
        per_fold[donor] -= 1
        per_fold[empty] += 1


class GroupShuffle(Splitter):
    """Independent random draws of whole groups for validation (scikit-learn's GroupShuffleSplit)."""

    name = "group_shuffle"
    guards = frozenset({"group"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        n_splits: int = Field(5, ge=1, description="number of draws")
        test_size: Size = Field(None, description="fraction or count of valid groups (default 0.2)")
        train_size: Size = Field(None, description="fraction or count of train groups (default: the rest)")
        seed: Seed = 0

    def split(self, dataset: Dataset) -> Iterator[Fold]:
        codes, n_groups = group_codes(dataset, self.name)
        n_train, n_test = shuffle_sizes(n_groups, self.params.test_size, self.params.train_size, 0.2, "groups")
        rng = np.random.RandomState(self.params.seed)
        for index in range(self.params.n_splits):
            order = rng.permutation(n_groups)
            role = np.full(n_groups, -1, dtype=np.int8)
            role[order[:n_test]] = 1
            role[order[n_test : n_test + n_train]] = 0
            row_role = role[codes]
            yield Fold(index, np.flatnonzero(row_role == 0), np.flatnonzero(row_role == 1))


class LeaveOneGroupOut(Splitter):
    """One fold per group: validate on that group, train on all the others."""

    name = "leave_one_group_out"
    guards = frozenset({"group"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def get_n_splits(self, dataset: Dataset | None = None) -> int:
        """The number of groups, which needs the data."""
        if dataset is None:
            raise BadInput(f"data.group: {self.name} has one fold per group, so counting folds needs the groups")
        return self._groups(dataset)[1]

    def _groups(self, dataset: Dataset) -> tuple[np.ndarray, int]:
        codes, n_groups = group_codes(dataset, self.name)
        if n_groups < 2:
            raise BadInput(
                f"data.group: {self.name} needs at least 2 groups; column {dataset.group!r} has {n_groups}"
            )
        return codes, n_groups

    def split(self, dataset: Dataset) -> Iterator[Fold]:
        codes, n_groups = self._groups(dataset)
        by_group = np.argsort(codes, kind="stable")
        bounds = np.r_[0, np.cumsum(np.bincount(codes, minlength=n_groups))]
        for group in range(n_groups):
            valid = by_group[bounds[group] : bounds[group + 1]]
            yield Fold(group, np.flatnonzero(codes != group), valid)
