"""What the built-in splitters share: parameter types, checks, and vectorised fold assignment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from math import ceil, floor
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from scribbles.core import BadInput, Fold
from scribbles.core.data import parse_span


def _span(value: int | str) -> int | str:
    parse_span(value, "")  # raises ValueError, which the registry reports with the field's path
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


#: A row count (time steps, with a time column) or a duration like "7D" or "12h".
Span = Annotated[int | str, AfterValidator(_span)]
#: A fraction of the rows (0 < f < 1) or a count.
Size = int | float | None


class Params(BaseModel):
    """Parameters every k-fold splitter takes."""

    model_config = ConfigDict(extra="forbid")
    n_splits: int = Field(5, ge=2, description="number of folds")


def check_count(splitter: str, n_splits: int, available: int, what: str) -> None:
    """BadInput when ``n_splits`` exceeds the rows or groups there are."""
    if available < 2:
        # "lower n_splits to at most 1" would name a value no splitter takes.
        raise BadInput(
            f"split.n_splits: {splitter} needs at least 2 {what} (one to train on, one to validate) but the "
            f"data has {available}; add data, or pick a splitter over something the data has more of"
        )
    if n_splits > available:
        raise BadInput(
            f"split.n_splits: {splitter} asks for {n_splits} folds but the data has {available} {what}; "
            f"lower n_splits to at most {available}"
        )


#: From this many rows a fold's train positions are found on a second core while this one finds its valid.
PARALLEL_ROWS = 1 << 20
_helper: ThreadPoolExecutor | None = None


def _second_core() -> ThreadPoolExecutor | None:
    """One worker thread for large folds, made on first use; None where this process has one core."""
    global _helper
    # The cores this process may run on (Linux); elsewhere (macOS, Windows) the machine's.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if _helper is None and cores > 1:
        _helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scribbles-folds")
    return _helper


def folds_from_assignment(row_fold: np.ndarray, n_folds: int) -> Iterator[Fold]:
    """One fold per index: valid = the rows assigned to it, train = every other assigned row.

    ``row_fold`` is a small int per row; -1 leaves a row out of every fold. Writing the positions
    (and the kernel's zeroing of fresh pages for them) is most of a large split's time; NumPy releases
    the GIL meanwhile, so on large data the train side is written on a second core.
    """
    unassigned = row_fold < 0
    everyone = not unassigned.any()

    def train_rows(index: int) -> np.ndarray:
        return np.flatnonzero(row_fold != index if everyone else (row_fold != index) & ~unassigned)

    helper = _second_core() if len(row_fold) >= PARALLEL_ROWS else None
    for index in range(n_folds):
        if helper is None:
            train, valid = train_rows(index), np.flatnonzero(row_fold == index)
        else:
            pending = helper.submit(train_rows, index)
            valid = np.flatnonzero(row_fold == index)
            train = pending.result()
        yield Fold.of_sorted(index, train, valid)


def fold_dtype(n_folds: int) -> type[np.signedinteger]:
    """The smallest signed int that holds a fold index (less memory traffic per comparison)."""
    return np.int8 if n_folds < 127 else np.int16 if n_folds < 32767 else np.int64


def lightest_first(weights: np.ndarray, n_folds: int) -> np.ndarray:
    """The fold of each item when items, in this order, each go to the lightest fold (lowest index on ties).

    This is scikit-learn's GroupKFold rule, exactly, vectorised: within a run of equal weights the
    greedy picks "slots" (fold f at load L_f + c*w) in increasing (load, fold) order, so each run is one
    sort instead of one Python step per item.
    """
    weights = np.asarray(weights, dtype=np.int64)
    loads = np.zeros(n_folds, dtype=np.int64)
    out = np.empty(len(weights), dtype=np.int64)
    if len(weights) == 0:
        return out
    bounds = np.flatnonzero(np.diff(weights)) + 1
    starts, ends = np.r_[0, bounds], np.r_[bounds, len(weights)]
    folds = np.arange(n_folds)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        count, weight = end - start, int(weights[start])
        if count <= 4 or weight == 0:
            for item in range(start, end):
                lightest = int(np.argmin(loads))
                out[item] = lightest
                loads[lightest] += weight
            continue
        # Slots per fold: enough to reach every level the first `count` picks can touch.
        per_fold = (loads.max() - loads) // weight + -(-count // n_folds) + 1
        per_fold = np.minimum(per_fold, count)
        fold_of_slot = np.repeat(folds, per_fold)
        offsets = np.cumsum(per_fold) - per_fold
        level = loads[fold_of_slot] + (np.arange(len(fold_of_slot)) - offsets[fold_of_slot]) * weight
        key = level * n_folds + fold_of_slot
        chosen = np.argpartition(key, count - 1)[:count] if count < len(key) else np.arange(len(key))
        chosen = chosen[np.argsort(key[chosen], kind="stable")]
        picked = fold_of_slot[chosen]
        out[start:end] = picked
        loads += np.bincount(picked, minlength=n_folds) * weight
    return out


def shuffle_sizes(n: int, test_size: Size, train_size: Size, default_test: float, what: str) -> tuple[int, int]:
    """Train and test counts out of ``n`` items; scikit-learn's rules, errors naming the field."""
    if test_size is None and train_size is None:
        test_size = default_test
    for field, size in (("test_size", test_size), ("train_size", train_size)):
        if size is None:
            continue
        if isinstance(size, float) and not 0 < size < 1:
            raise BadInput(f"split.{field}: {size} must be a fraction in (0, 1) or a count of {what}")
        if isinstance(size, int) and not 0 < size < n:
            raise BadInput(f"split.{field}: {size} must be between 1 and {n - 1} (the data has {n} {what})")
    if isinstance(test_size, float) and isinstance(train_size, float) and test_size + train_size > 1:
        raise BadInput(f"split.test_size + split.train_size = {test_size + train_size}; it must be at most 1")
    n_test = ceil(test_size * n) if isinstance(test_size, float) else test_size
    n_train = floor(train_size * n) if isinstance(train_size, float) else train_size
    if n_train is None:
        n_train = n - n_test
    elif n_test is None:
        n_test = n - n_train
    if n_train + n_test > n:
        raise BadInput(
            f"split.test_size/train_size: {n_test} test + {n_train} train {what} is more than the {n} there are"
        )
    if n_train == 0:
        raise BadInput(
            f"split.test_size: with {n} {what}, test_size={test_size} and train_size={train_size} leave no "
            f"training data; lower test_size"
        )
    return int(n_train), int(n_test)


def as_span(value: int | str, field: str) -> int | pd.Timedelta:
    """A validated Span parameter as a row count or a Timedelta."""
    try:
        return parse_span(value, field)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
