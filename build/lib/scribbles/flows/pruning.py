"""What a run reports to an Optuna trial while its folds train, and how a pruned trial ends in MLflow.

``Reporter`` is handed to ``runs.run_one`` by the search (flows/search.py). Folds train in a fixed
order (fold 0 first), so the steps a trial reports mean the same thing in every trial:

* ``median``, ``hyperband``, ``none``: every epoch of every fold, step ``fold * train.epochs + epoch``,
  value the epoch's ``valid_loss`` (negated when the study maximises, so that Optuna compares in the
  study's direction);
* ``wilcoxon``: after each fold, step ``fold``, value the fold's ``rank_by`` metric, as
  ``optuna.pruners.WilcoxonPruner`` expects (it compares per-fold values with the best trial's).

When the pruner says so the reporter raises ``Pruned``: the fold in progress stops, the folds that
finished are kept, and the trial run ends KILLED with tag ``scribbles.pruned`` (``mark_pruned``).
"""

from __future__ import annotations

import math
from typing import Any


class Pruned(Exception):
    """The pruner stopped the trial at ``step``; ``reason`` says why, on one line."""

    def __init__(self, step: int, reason: str) -> None:
        self.step, self.reason = step, reason
        super().__init__(f"pruned at step {step}: {reason}")


class Reporter:
    """Reports a run's epochs (or folds) to ``trial`` and raises ``Pruned`` when its pruner says so."""

    def __init__(self, trial: Any, pruner: str, epochs: int, rank_by: str, maximise: bool) -> None:
        self.trial, self.pruner, self.epochs, self.rank_by, self.maximise = trial, pruner, epochs, rank_by, maximise

    def started(self, links: dict[str, str]) -> None:
        """The trial's run exists: its MLflow run id goes on the Optuna trial (for resume and the dashboard)."""
        if links.get("mlflow_run_id"):
            self.trial.set_user_attr("scribbles.mlflow_run_id", links["mlflow_run_id"])

    def epoch(self, fold: int, epoch: int, values: dict[str, float]) -> None:
        """One epoch of fold ``fold`` finished (per-epoch pruners)."""
        if self.pruner == "wilcoxon" or "valid_loss" not in values:
            return
        value = float(values["valid_loss"])
        if not math.isfinite(value):
            return
        step = fold * self.epochs + epoch
        self.trial.report(-value if self.maximise else value, step)
        if self.pruner != "none" and self.trial.should_prune():
            raise Pruned(step, f"{self.pruner} pruner: valid_loss {value:.6g} at fold {fold} epoch {epoch}")

    def fold(self, fold: int, metrics: dict[str, float]) -> None:
        """Fold ``fold`` finished (the Wilcoxon pruner)."""
        if self.pruner != "wilcoxon" or self.rank_by not in metrics:
            return
        value = float(metrics[self.rank_by])
        self.trial.report(value, fold)
        if self.trial.should_prune():
            raise Pruned(fold, f"wilcoxon pruner: {self.rank_by} of folds 0..{fold} significantly worse than "
                               "the best trial's on the same folds")


def mark_pruned(tracking_uri: str, run_id: str, pruned: Pruned) -> None:
    """End a pruned trial's run KILLED with tag ``scribbles.pruned`` (step and reason); the fold run the
    pruner cut short too (its finished fold runs stay FINISHED)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    tag = f"step {pruned.step}: {pruned.reason}"
    run = client.get_run(run_id)
    for child in client.search_runs([run.info.experiment_id], f"tags.\"mlflow.parentRunId\" = '{run_id}' and "
                                    "attributes.status = 'RUNNING'", max_results=1000):
        client.set_tag(child.info.run_id, "scribbles.pruned", tag)
        client.set_terminated(child.info.run_id, "KILLED")
    client.set_tag(run_id, "scribbles.pruned", tag)
    client.set_terminated(run_id, "KILLED")
