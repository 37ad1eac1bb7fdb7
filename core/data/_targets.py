"""Targets and features that cannot teach a model anything, caught before any work.

A target with one class scores 1.0 whatever the model does; a target that is also the group or time
column, or one of the features, hands the answer to the model; a float target with many distinct
values under classification silently becomes hundreds of classes. Each is a ``BadInput`` naming the
column. A constant feature column is harmless but useless: it is reported as a warning line.
"""

from __future__ import annotations

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
