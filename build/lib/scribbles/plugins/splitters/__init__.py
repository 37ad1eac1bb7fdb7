"""Validation splitters (family ``splitter``): which rows validate which fold.

A random subset is often the wrong validation set: time series need contiguous later intervals, and
data with many rows per object (a person, a car) need every row of an object on one side. Row
splitters (``kfold``, ``stratified_kfold``, ``shuffle``) live in ``rows``; group splitters
(``group_kfold``, ``stratified_group_kfold``, ``group_shuffle``, ``leave_one_group_out``) in
``grouped``; time splitters (``time_series``, ``purged_group_time_series``) in ``temporal``.

They need no scikit-learn, and ``as_sklearn()`` hands any of them to scikit-learn's model-selection
tools with the same folds as scikit-learn's splitter of the same name.
"""

from __future__ import annotations

from collections.abc import Iterable

from scribbles.core import Technique, hookimpl

from .grouped import GroupKFold, GroupShuffle, LeaveOneGroupOut, StratifiedGroupKFold
from .rows import KFold, Shuffle, StratifiedKFold
from .temporal import PurgedGroupTimeSeries, TimeSeries

SPLITTERS: tuple[type[Technique], ...] = (
    KFold,
    StratifiedKFold,
    Shuffle,
    TimeSeries,
    GroupKFold,
    StratifiedGroupKFold,
    GroupShuffle,
    LeaveOneGroupOut,
    PurgedGroupTimeSeries,
)

__all__ = [
    "SPLITTERS",
    "GroupKFold",
    "GroupShuffle",
    "KFold",
    "LeaveOneGroupOut",
    "PurgedGroupTimeSeries",
    "Shuffle",
    "StratifiedGroupKFold",
    "StratifiedKFold",
    "TimeSeries",
]


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return list(SPLITTERS)
