"""`scribbles promote RUN_ID --alias A`: register a run's model in MLflow's model registry, with evidence.

What is registered: the run's fold models as one ensemble that averages their class probabilities
(``scribbles.core.evaluation.Ensemble``), not a refit on every row. Why:

- the evidence is about these models: the paired test compared the fold models' scores, and the
  ensemble's members are exactly what was scored; a refit is a new, never-validated model (its epochs,
  early stopping and learning rate were chosen for (k-1)/k of the rows);
- nothing is trained again: every fold run already keeps its model, so promotion is seconds whatever
  the strategy (DDP, FSDP) and data size, and needs no GPU or data access;
- averaging k models' probabilities is itself usually at least as accurate as one of them (bagging's
  argument), at k times the inference cost, which the version's tags state.

It refuses (exit 1) when the alias already has a holder and the run is not significantly better than
it on the same folds (one-sided Nadeau-Bengio corrected t-test at ``alpha`` on the chosen metric), or
was scored on other folds. ``force`` overrides and is recorded on the version. The version records the
run, the data version, the split fingerprint and the test result as tags.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scribbles.core import BadInput, RunStore, ScribblesError, StoredRun
from scribbles.core.fingerprint import TAGS, differences
from scribbles.core.run_store import FINISHED, ModelVersion

from .paired import DIRECTIONS_KEY, paired
from .records import find_run
from .stores import open_store


class NotBetter(ScribblesError):
    """The run may not take the alias: not significantly better than its holder, or not comparable."""


@dataclass
class Promotion:
    """What ``promote`` did: the registered version and the evidence behind it."""

    model: str
    alias: str
    version: str
    run_id: str
    evidence: dict[str, Any] = field(default_factory=dict)
    forced: bool = False


def one_sided_p(result: Any) -> float:
    """The corrected test's one-sided p-value for "A is better" (from its two-sided p and its sign)."""
    better = (result.mean_diff > 0) == result.greater_is_better and result.mean_diff != 0
    return result.p / 2 if better else 1 - result.p / 2


def evidence_against(store: RunStore, run: StoredRun, holder: ModelVersion, metric: str, alpha: float,
                     force: bool) -> dict[str, Any]:
    """The test of ``run`` against the alias holder's run; NotBetter unless it is significantly better."""
    where = f"the current holder (version {holder.version}, run {holder.run_id})"
    if holder.run_id == run.run_id:
        if force:
            return {"holder_version": holder.version, "holder_run": holder.run_id, "same_run": True}
        raise NotBetter(f"run {run.run_id} already holds this alias as version {holder.version}; nothing "
                        "registered")
    holder_run = store.get(holder.run_id)
    if holder_run is None:
        if force:
            return {"holder_version": holder.version, "holder_run": holder.run_id, "not_paired": ["run gone"]}
        raise NotBetter(f"the run of {where} is gone from {store.shown}; nothing registered; --force overrides")
    reasons = differences(run.record, holder_run.record, (run.run_id, holder_run.run_id))
    if reasons:
        if force:
            return {"holder_version": holder.version, "holder_run": holder.run_id, "not_paired": reasons}
        raise NotBetter(f"run {run.run_id} was not scored on the same folds as {where}: {'; '.join(reasons)}; "
                        "nothing registered; run it on the same data and split, or pass --force")
    result = paired(store, run, holder_run, [metric])[0]
    p = one_sided_p(result)
    evidence = {"holder_version": holder.version, "holder_run": holder.run_id, "metric": metric, "alpha": alpha,
                "p_one_sided": p, **result.as_dict()}
    if p >= alpha and not force:
        raise NotBetter(
            f"run {run.run_id} is not significantly better than {where} on {metric}: mean difference "
            f"{result.mean_diff:+.4f} (95% interval [{result.low:+.4f}, {result.high:+.4f}]), one-sided corrected "
            f"p {p:.3g} >= alpha {alpha:g} over {result.n} folds; nothing registered; --force overrides")
    return evidence


def fold_runs(store: RunStore, run: StoredRun) -> list[StoredRun]:
    """The run's finished, current fold runs in fold order."""
    found = store.runs(store.experiment_name(run.experiment_id), parent=run.run_id, status=FINISHED, limit=10000)
    found = [r for r in found if r.record.get("superseded") != "true" and r.fold is not None]
    return sorted(found, key=lambda r: r.fold or 0)


def check_alias(alias: str, field: str = "--alias") -> None:
    """BadInput for an alias MLflow would refuse (``v3`` is reserved for versions; letters, digits, - and _)."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", alias) or re.fullmatch(r"[vV]\d+", alias) or alias.lower() == "latest":
        raise BadInput(f"{field}: {alias!r} is not a usable alias; letters, digits, '-' and '_', not 'latest' nor "
                       f"v<number> (those name versions), e.g. {field} champion")


def promote(run_id: str, alias: str, alpha: float = 0.05, force: bool = False, metric: str | None = None,
            store: RunStore | None = None, tracking_uri: str | None = None) -> Promotion:
    """Register ``run_id``'s fold ensemble under its experiment's name with ``alias``, when the evidence allows.

    The run is read from ``store`` (default: the store it was written to, or ``tracking_uri``). NotBetter
    (exit 1) when a holder of the alias exists and the run is not significantly better on the same folds
    (unless ``force``); BadInput for a run that cannot be promoted at all.
    """
    check_alias(alias)
    if not 0 < alpha < 1:
        raise BadInput(f"--alpha: {alpha} must be between 0 and 1, e.g. --alpha 0.05")
    store = store or open_store(tracking_uri, [run_id])
    run = find_run(store, run_id)
    if run.status != FINISHED:
        raise BadInput(f"RUN_ID: run {run.run_id} is {run.status}; only a finished run can be promoted "
                       f"(`scribbles resume {run.run_id}` finishes a stopped one)")
    if "sweep" in run.record:
        raise BadInput(f"RUN_ID: run {run.run_id} is a sweep; promote one of its trials (the best is recorded "
                       f"as best_trial = {run.record.get('best_trial', '?')})")
    directions = json.loads(run.record.get(DIRECTIONS_KEY) or "{}")
    if not directions or not run.record.get(TAGS["fingerprint"]):
        raise BadInput(f"RUN_ID: run {run.run_id} records no split fingerprint or metrics (made before "
                       "scribbles recorded them); rerun it with `scribbles rerun RUN_ID`")
    if metric is not None and metric not in directions:
        # Checked here, not only against a holder: with no model holding the alias the typo was registered.
        import difflib

        close = difflib.get_close_matches(metric, list(directions), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise BadInput(f"--metric: {metric!r} is not a metric run {run.run_id} recorded; {hint}"
                       f"choose one of {', '.join(directions)}")
    metric = metric or next(iter(directions))
    name = store.experiment_name(run.experiment_id)
    holder = store.alias_holder(name, alias)
    evidence = evidence_against(store, run, holder, metric, alpha, force) if holder is not None else {
        "holder_version": None, "note": f"no model held alias {alias!r}: nothing to beat"}
    with tempfile.TemporaryDirectory(prefix="scribbles-promote-") as tmp:
        folder, members = store.ensemble(run, fold_runs(store, run), Path(tmp))
        record = {
            "run_id": run.run_id,
            "data_version": run.record.get(TAGS["data"], ""),
            "split_fingerprint": run.record[TAGS["fingerprint"]],
            "test": json.dumps(evidence, default=str)[:5000],
            "kind": "fold ensemble (mean of class probabilities)",
            "members": str(members),
            "forced": "true" if force else "false",
        }
        description = (f"Fold ensemble of run {run.run_id} ({members} fold models, probabilities averaged); "
                       "promoted by `scribbles promote`.")
        version = store.register(run, folder, name, alias, record, description)
    return Promotion(name, alias, version, run.run_id, evidence, force)
