"""Targets and features that cannot teach a model anything, caught before any work.

A target with one class scores 1.0 whatever the model does; a target that is also the group or time
column, or one of the features, hands the answer to the model; a float target with many distinct
values under classification silently becomes hundreds of classes. Each is a ``BadInput`` naming the
column. A constant feature column is harmless but useless: it is reported as a warning line.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..contracts import Dataset
from ..errors import BadInput

#: A float target with more distinct values than this, under classification, is taken for a regression target.
MAX_FLOAT_CLASSES = 50
#: A whole-number target with more distinct values than this, most seen fewer than ``MIN_CLASS_ROWS`` times, is
#: taken for a count or a score (a regression target) unless the config sets ``task: classification`` itself.
MAX_WHOLE_CLASSES = 20
MIN_CLASS_ROWS = 5


def target_problem(dataset: Dataset, task: str = "classification", task_given: bool = True) -> str | None:
    """Why ``dataset``'s target cannot be learned as ``task`` (one line naming the field), or None.

    ``task_given``: the config sets ``task`` itself (else classification is the default), which keeps a
    whole-number target with many rare values as classes.
    """
    target = dataset.target
    for role in ("group", "time"):
        if getattr(dataset, role) == target:
            return (f"data.target: column {target!r} is also data.{role}; a model would learn the answer from "
                    f"it. Pick another target or {role} column")
    if target in dataset.features:
        return (f"data.features: lists the target column {target!r}; a model would read the answer. "
                "Remove it from data.features")
    column = dataset.frame[target]
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(column):
            return f"data.target: column {target!r} is not numeric; task: regression needs numbers"
        if column.nunique() < 2:
            return f"data.target: column {target!r} has a single value; there is nothing to predict"
        return None
    distinct = column.nunique()
    if distinct < 2:
        value = str(column.iloc[0]) if len(column) else "none"
        return (f"data.target: column {target!r} has one class ({value}); a classifier needs at least two. "
                "Check the file or the target column")
    whole = pd.api.types.is_integer_dtype(column)
    if pd.api.types.is_float_dtype(column) and distinct > MAX_FLOAT_CLASSES:
        values = column.to_numpy()
        if not np.all(np.equal(np.mod(values, 1), 0)):
            return (f"data.target: column {target!r} holds {distinct} distinct decimal values; as classes that "
                    f"is {distinct} classes. For a numeric target set `task: regression`")
        whole = True
    if whole and not task_given and distinct > MAX_WHOLE_CLASSES:
        # Counts, prices and scores are stored as whole numbers: as classes, each value is a class of its own.
        rows = float(column.value_counts().median())
        if rows < MIN_CLASS_ROWS:
            return (f"data.target: column {target!r} holds {distinct} distinct whole numbers, half of them on fewer "
                    f"than {MIN_CLASS_ROWS} rows: as classes a classifier cannot learn them. For a numeric target "
                    "set `task: regression`; to keep them as classes set `task: classification`")
    return None


def check_target(dataset: Dataset, task: str = "classification", task_given: bool = True) -> None:
    """Raise ``BadInput`` when ``target_problem`` finds one."""
    problem = target_problem(dataset, task, task_given)
    if problem:
        raise BadInput(problem)


def constant_features(dataset: Dataset) -> list[str]:
    """Feature columns that hold one value on every row (they carry no information)."""
    if not dataset.features or not len(dataset.frame):
        return []
    values = dataset.frame[dataset.features]
    return [str(c) for c, n in values.nunique(dropna=False).items() if n <= 1]


#: Folds whose valid sizes differ by more than this factor get a warning (their mean weights them equally).
FOLD_SIZE_RATIO = 10


def fold_warnings(dataset: Dataset, folds: list[Any], task: str = "classification") -> list[str]:
    """Warnings (one line each) about folds that train but mislead: a class in a fold's valid rows that its
    train rows lack (the model cannot predict it there), and valid sizes that differ by more than
    ``FOLD_SIZE_RATIO`` times (one huge group, say: the mean over folds weights each fold equally)."""
    lines = []
    if task == "classification" and folds:
        y = dataset.frame[dataset.target].to_numpy()
        missing: dict[str, list[str]] = {}
        for fold in folds:
            unseen = set(pd.unique(y[fold.valid])) - set(pd.unique(y[fold.train]))
            for value in sorted(map(str, unseen)):
                missing.setdefault(value, []).append(str(fold.index))
        for value, where in list(missing.items())[:3]:
            lines.append(f"data.target: class {value!r} is in the valid rows of fold {', '.join(where)} but not in "
                         "its train rows: the model cannot predict it there (a stratified splitter, e.g. "
                         "stratified_group_kfold, spreads a class over the folds)")
    sizes = [len(fold.valid) for fold in folds]
    if sizes and min(sizes) and max(sizes) > FOLD_SIZE_RATIO * min(sizes):
        lines.append(f"split: the folds' valid rows range from {min(sizes)} to {max(sizes)}; the mean over folds "
                     "weights each fold equally (a group much larger than the others, say)")
    return lines