"""Paired fold statistics of two recorded runs: the evidence behind `scribbles compare A B` and `promote`.

A run records its split fingerprint as tags and each fold's sizes and scores as ``fold_scores.json``
(the ``mlflow`` tracker). Two runs are compared only when their fingerprints are equal, i.e. they were
scored on the very same folds; the statistics themselves are ``scribbles.core.evaluation``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from scribbles.core import BadInput, RunStore, StoredRun
from scribbles.core import metric_names as naming
from scribbles.core.evaluation import Paired, compare_paired, not_worse
from scribbles.core.fingerprint import differences
from scribbles.core.run_store import FOLD_SCORES

#: The record key of which of a run's metrics are better when greater.
DIRECTIONS_KEY = "greater_is_better"


@dataclass
class Scores:
    """One run's folds: sizes and final metrics, by fold index."""

    run_id: str
    train_rows: dict[int, int]
    valid_rows: dict[int, int]
    metrics: dict[int, dict[str, float]]
    directions: dict[str, bool]


def fold_scores(store: RunStore, run: StoredRun) -> Scores:
    """The fold scores a run recorded; BadInput when it has none (a run from before they were recorded)."""
    run_id = run.run_id
    raw = store.artifact(run_id, FOLD_SCORES)
    if raw is None:
        raise BadInput(f"RUN {run_id} has no fold_scores.json (it did not finish, or it predates paired "
                       f"statistics); rerun it with `scribbles rerun {run_id}`")
    folds = json.loads(raw)["folds"]
    directions = json.loads(run.record.get(DIRECTIONS_KEY) or "{}")
    return Scores(run_id, {f["fold"]: int(f["train_rows"] or 0) for f in folds},
                  {f["fold"]: int(f["valid_rows"] or 0) for f in folds},
                  {f["fold"]: dict(f["metrics"]) for f in folds}, directions)


def check_same_folds(a: StoredRun, b: StoredRun) -> None:
    """BadInput naming why, unless runs ``a`` and ``b`` were scored on the same folds."""
    reasons = differences(a.record, b.record, (a.run_id, b.run_id))
    if reasons:
        raise BadInput(f"runs {a.run_id[:8]} and {b.run_id[:8]} were not scored on the same folds: "
                       f"{'; '.join(reasons)}; paired statistics need the same data and split (same "
                       "split section and data version)")


def direction(name: str, directions: dict[str, bool]) -> bool:
    """Whether greater is better for ``name`` (``accuracy_tta`` and ``accuracy_worst_group`` follow ``accuracy``)."""
    for base in sorted(directions, key=len, reverse=True):
        if name == base or name.startswith(f"{base}_"):
            return bool(directions[base])
    return True


def metric_choices(a: Scores, b: Scores) -> list[str]:
    """Metrics both runs have on every fold: the configured ones first, then their worst-group values."""
    shared = set.intersection(*(set(m) for m in (*a.metrics.values(), *b.metrics.values())))
    names = [m for m in a.directions if m in shared]
    names += [naming.worst_group(m) for m in a.directions if naming.worst_group(m) in shared]
    return names or sorted(shared)


def paired(store: RunStore, run_a: StoredRun, run_b: StoredRun, metrics: list[str] | None = None,
           rope: float = 0.0) -> list[Paired]:
    """Every requested metric of A against B on their shared folds; BadInput when they cannot be paired."""
    check_same_folds(run_a, run_b)
    a, b = fold_scores(store, run_a), fold_scores(store, run_b)
    if sorted(a.metrics) != sorted(b.metrics):
        raise BadInput(f"runs {a.run_id[:8]} and {b.run_id[:8]} finished different folds "
                       f"({sorted(a.metrics)} vs {sorted(b.metrics)}); finish the one that stopped early with "
                       f"`scribbles resume {a.run_id}` or `scribbles resume {b.run_id}`")
    if len(a.metrics) < 2:
        raise BadInput("paired statistics need at least 2 folds; these runs have "
                       f"{len(a.metrics)}; use a splitter with n_splits >= 2")
    available = metric_choices(a, b)
    chosen = metrics or available
    for name in chosen:
        if name not in available:
            import difflib

            close = difflib.get_close_matches(name, available, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise BadInput(f"--metric: {name!r} is not recorded on every fold of both runs; {hint}"
                           f"choose one of {', '.join(available)}")
    folds = sorted(a.metrics)
    n_train = float(np.mean([a.train_rows[i] for i in folds]))
    n_test = float(np.mean([a.valid_rows[i] for i in folds]))
    return [
        compare_paired(name, np.array([a.metrics[i][name] for i in folds]),
                       np.array([b.metrics[i][name] for i in folds]), n_train, n_test, rope,
                       direction(name, a.directions))
        for name in chosen
    ]


#: Significance level of the sweep's "not significantly worse than the best" mark.
SWEEP_ALPHA = 0.05


def mark_not_worse(ranked: list[dict[str, Any]], metric: str, greater: bool,
                   alpha: float = SWEEP_ALPHA) -> list[dict[str, Any]]:
    """Each ranked trial gains ``not_worse``: whether it is not significantly worse than the best trial.

    Paired on the folds the trials share (equal split fingerprints), by the one-sided corrected t-test
    at ``alpha`` (``scribbles.core.evaluation.not_worse``); None where the folds differ or a value is missing.
    The best trial is marked True, and ``p_vs_best`` holds the two-sided corrected p-value.
    """
    if not ranked:
        return ranked
    best = ranked[0]

    def scores(trial: dict[str, Any]) -> np.ndarray | None:
        values = [fold.get(metric) for fold in trial.get("folds", [])]
        return None if any(v is None for v in values) or len(values) < 2 else np.array(values, dtype=float)

    best_scores = scores(best)
    for trial in ranked:
        trial["not_worse"], trial["p_vs_best"] = None, None
        mine = scores(trial)
        same = trial.get("split_fingerprint") and trial.get("split_fingerprint") == best.get("split_fingerprint")
        if not same or best_scores is None or mine is None or len(mine) != len(best_scores):
            continue
        rows = np.array(list(best["fold_rows"].values()), dtype=float)
        n_train, n_test = float(rows[:, 0].mean()), float(rows[:, 1].mean())
        trial["not_worse"] = trial is best or not_worse(best_scores, mine, n_train, n_test, greater, alpha)
        if trial is not best:
            trial["p_vs_best"] = compare_paired(metric, mine, best_scores, n_train, n_test,
                                                greater_is_better=greater).p
    return ranked
