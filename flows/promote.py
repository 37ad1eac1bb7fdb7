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

from scribbles.core import BadInput, ScribblesError
from scribbles.core.fingerprint import TAGS, differences

from .paired import DIRECTIONS_TAG, paired
from .records import client, find_run


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


def current_holder(mlflow: Any, name: str, alias: str) -> Any | None:
    """The model version that holds ``alias`` of registered model ``name``, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def evidence_against(mlflow: Any, run: Any, holder: Any, metric: str, alpha: float, force: bool) -> dict[str, Any]:
    """The test of ``run`` against the alias holder's run; NotBetter unless it is significantly better."""
    where = f"the current holder (version {holder.version}, run {holder.run_id})"
    if holder.run_id == run.info.run_id:
        if force:
            return {"holder_version": holder.version, "holder_run": holder.run_id, "same_run": True}
        raise NotBetter(f"run {run.info.run_id} already holds this alias as version {holder.version}; nothing "
                        "registered")
    holder_run = mlflow.get_run(holder.run_id)
    reasons = differences(run.data.tags, holder_run.data.tags)
    if reasons:
        if force:
            return {"holder_version": holder.version, "holder_run": holder.run_id, "not_paired": reasons}
        raise NotBetter(f"run {run.info.run_id} was not scored on the same folds as {where}: {'; '.join(reasons)}; "
                        "nothing registered; run it on the same data and split, or pass --force")
    result = paired(mlflow, run, holder_run, [metric])[0]
    p = one_sided_p(result)
    evidence = {"holder_version": holder.version, "holder_run": holder.run_id, "metric": metric, "alpha": alpha,
                "p_one_sided": p, **result.as_dict()}
    if p >= alpha and not force:
        raise NotBetter(
            f"run {run.info.run_id} is not significantly better than {where} on {metric}: mean difference "
            f"{result.mean_diff:+.4f} (95% interval [{result.low:+.4f}, {result.high:+.4f}]), one-sided corrected "
            f"p {p:.3g} >= alpha {alpha:g} over {result.n} folds; nothing registered; --force overrides")
    return evidence


def fold_runs(mlflow: Any, run: Any) -> list[Any]:
    """The run's finished, current fold runs in fold order."""
    found = mlflow.search_runs(
        [run.info.experiment_id], f"tags.\"mlflow.parentRunId\" = '{run.info.run_id}' and attributes.status = "
        "'FINISHED'", max_results=10000)
    found = [r for r in found if r.data.tags.get("scribbles.superseded") != "true" and "scribbles.fold" in r.data.tags]
    return sorted(found, key=lambda r: int(r.data.tags["scribbles.fold"]))


def _has_model(mlflow: Any, run_id: str) -> bool:
    return any(item.path == "model" for item in mlflow.list_artifacts(run_id))


def ensemble_folder(mlflow: Any, run: Any, out: Path) -> tuple[Path, int]:
    """The fold models of ``run`` saved as one ensemble in the ``pytorch`` flavour; the folder and member count."""
    import mlflow.pytorch as mlflow_pytorch
    from mlflow.models import Model
    from scribbles.core.evaluation import Ensemble
    from scribbles.plugins.trackers.model_log import save_model

    members, example = [], None
    for fold in fold_runs(mlflow, run):
        source = fold.info.run_id
        if not _has_model(mlflow, source) and fold.data.tags.get("scribbles.cached_from"):
            source = fold.data.tags["scribbles.cached_from"]  # a reused fold's model stays with its source run
        if not _has_model(mlflow, source):
            raise BadInput(f"RUN_ID: fold {fold.data.tags['scribbles.fold']} of run {run.info.run_id} kept no model "
                           "(its model family is not a torch module); such a run cannot be promoted")
        flavour = mlflow.get_run(source).data.tags.get("scribbles.model_flavour", "pytorch")
        if flavour != "pytorch":
            raise BadInput(f"RUN_ID: the fold models of run {run.info.run_id} are MLflow '{flavour}' models (a one-hot "
                           "preprocessing step keeps them outside torch); promote ensembles pytorch fold models only: "
                           "register one with mlflow.register_model, or encode the text columns before the run")
        local = mlflow.download_artifacts(source, "model", str(out / f"fold-{fold.data.tags['scribbles.fold']}"))
        members.append(mlflow_pytorch.load_model(local))
        if example is None:
            example = Model.load(local).load_input_example(local)
    if not members:
        raise BadInput(f"RUN_ID: run {run.info.run_id} has no finished fold runs to promote")
    folder = out / "ensemble"
    save_model(Ensemble(members), example, folder)
    return folder, len(members)


def register(mlflow: Any, run: Any, folder: Path, name: str, alias: str, tags: dict[str, str]) -> str:
    """The ensemble as a logged model of ``run`` and a new version of ``name`` holding ``alias``; its version."""
    from mlflow.entities import LoggedModelOutput
    from mlflow.exceptions import MlflowException

    logged = mlflow.create_logged_model(run.info.experiment_id, name="fold-ensemble", source_run_id=run.info.run_id,
                                        tags=tags, model_type="scribbles fold ensemble")
    mlflow.log_model_artifacts(logged.model_id, str(folder))
    mlflow.finalize_logged_model(logged.model_id, "READY")
    mlflow.log_outputs(run.info.run_id, [LoggedModelOutput(logged.model_id, step=0)])
    try:
        mlflow.create_registered_model(name, description=f"Models of the scribbles experiment {name!r}")
    except MlflowException as exc:
        if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
            raise
    version = mlflow.create_model_version(
        name, source=f"models:/{logged.model_id}", run_id=run.info.run_id, tags=tags, model_id=logged.model_id,
        description=f"Fold ensemble of run {run.info.run_id} ({tags['scribbles.members']} fold models, "
                    "probabilities averaged); promoted by `scribbles promote`.")
    mlflow.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def check_alias(alias: str, field: str = "--alias") -> None:
    """BadInput for an alias MLflow would refuse (``v3`` is reserved for versions; letters, digits, - and _)."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", alias) or re.fullmatch(r"[vV]\d+", alias) or alias.lower() == "latest":
        raise BadInput(f"{field}: {alias!r} is not a usable alias; letters, digits, '-' and '_', not 'latest' nor "
                       f"v<number> (those name versions), e.g. {field} champion")


def promote(run_id: str, alias: str, alpha: float = 0.05, force: bool = False, metric: str | None = None,
            mlflow: Any = None) -> Promotion:
    """Register ``run_id``'s fold ensemble under its experiment's name with ``alias``, when the evidence allows.

    NotBetter (exit 1) when a holder of the alias exists and the run is not significantly better on the
    same folds (unless ``force``); BadInput for a run that cannot be promoted at all.
    """
    check_alias(alias)
    if not 0 < alpha < 1:
        raise BadInput(f"--alpha: {alpha} must be between 0 and 1, e.g. --alpha 0.05")
    mlflow = mlflow or client()
    run = find_run(mlflow, run_id)
    if run.info.status != "FINISHED":
        raise BadInput(f"RUN_ID: run {run.info.run_id} is {run.info.status}; only a finished run can be promoted "
                       "(`scribbles resume RUN_ID` finishes a stopped one)")
    if "scribbles.sweep" in run.data.tags:
        raise BadInput(f"RUN_ID: run {run.info.run_id} is a sweep; promote one of its trials (the best is tagged "
                       f"scribbles.best_trial = {run.data.tags.get('scribbles.best_trial', '?')})")
    directions = json.loads(run.data.tags.get(DIRECTIONS_TAG) or "{}")
    if not directions or not run.data.tags.get(TAGS["fingerprint"]):
        raise BadInput(f"RUN_ID: run {run.info.run_id} records no split fingerprint or metrics (made before "
                       "scribbles recorded them); rerun it with `scribbles rerun RUN_ID`")
    metric = metric or next(iter(directions))
    name = mlflow.get_experiment(run.info.experiment_id).name
    holder = current_holder(mlflow, name, alias)
    evidence = evidence_against(mlflow, run, holder, metric, alpha, force) if holder is not None else {
        "holder_version": None, "note": f"no model held alias {alias!r}: nothing to beat"}
    with tempfile.TemporaryDirectory(prefix="scribbles-promote-") as tmp:
        folder, members = ensemble_folder(mlflow, run, Path(tmp))
        tags = {
            "scribbles.run_id": run.info.run_id,
            "scribbles.data_version": run.data.tags.get(TAGS["data"], ""),
            "scribbles.split_fingerprint": run.data.tags[TAGS["fingerprint"]],
            "scribbles.test": json.dumps(evidence, default=str)[:5000],
            "scribbles.kind": "fold ensemble (mean of class probabilities)",
            "scribbles.members": str(members),
            "scribbles.forced": "true" if force else "false",
        }
        version = register(mlflow, run, folder, name, alias, tags)
    return Promotion(name, alias, version, run.info.run_id, evidence, force)
