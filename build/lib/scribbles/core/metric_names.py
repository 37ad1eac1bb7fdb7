"""The metric-name scheme, written once: how a metric's TTA value, gain, baseline, worst group and fold
summaries are named in results, MLflow and printed tables.

A fold has ``accuracy``, ``accuracy_tta``, ``accuracy_tta_gain``, ``accuracy_tta_hflip`` (one transform
alone), ``accuracy_baseline`` and ``accuracy_worst_group``; a parent run has each of them with ``_mean``
and ``_std`` (across folds).
"""

from __future__ import annotations

from collections.abc import Iterable

TTA, GAIN, BASELINE, WORST_GROUP, MEAN, STD = "_tta", "_gain", "_baseline", "_worst_group", "_mean", "_std"


def tta(metric: str, view: str = "") -> str:
    """``accuracy_tta``, or with ``view`` (a transform's label) ``accuracy_tta_hflip``."""
    return f"{metric}{TTA}_{view}" if view else f"{metric}{TTA}"


def tta_gain(metric: str) -> str:
    """``accuracy_tta_gain``: TTA's improvement on plain, positive when TTA helps."""
    return f"{metric}{TTA}{GAIN}"


def baseline(metric: str) -> str:
    """``accuracy_baseline``: the score of a model that ignores the features."""
    return f"{metric}{BASELINE}"


def worst_group(metric: str) -> str:
    """``accuracy_worst_group``: the fold's worst group's score."""
    return f"{metric}{WORST_GROUP}"


def mean(name: str) -> str:
    """``accuracy_mean``: the mean across folds (a parent run's metric)."""
    return f"{name}{MEAN}"


def std(name: str) -> str:
    """``accuracy_std``: the population standard deviation across folds."""
    return f"{name}{STD}"


def base_metrics(summary_names: Iterable[str]) -> list[str]:
    """The configured metrics (``accuracy``) among a parent run's metric names, in first-seen order: those
    with a ``_mean`` whose TTA twin has one too (``_tta_gain`` and per-transform names are its breakdown)."""
    names = set(summary_names)
    found: dict[str, None] = {}
    for name in summary_names:
        base = name.removesuffix(MEAN)
        if name.endswith(MEAN) and TTA not in base and mean(tta(base)) in names:
            found[base] = None
    return list(found)
