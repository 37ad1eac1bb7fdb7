"""What a run reports to an Optuna trial while its folds train, and how a pruned trial ends in MLflow.

``Reporter`` is handed to ``runs.run_one`` by the search (flows/search.py). Folds train in a fixed
order (fold 0 first), so the steps a trial reports mean the same thing in every trial:

* ``median``, ``hyperband``, ``none``: every epoch of every fold, step ``fold * train.epochs + epoch``,
  value the epoch's ``valid_loss`` (negated when the study maximises, so that Optuna compares in the
  study's direction);
* ``wilcoxon``: after each fold, step ``fold``, value the fold's ``rank_by`` metric, as
  ``optuna.pruners.WilcoxonPruner`` expects (it compares per-fold values with the best trial's).

When the pruner says so the reporter raises ``Pruned``: the fold in progress stops, the folds that
finished are kept, and the trial run ends KILLED, recording ``pruned`` (``mark_pruned``).
"""

from __future__ import annotations

import math
from typing import Any

from scribbles.core import RunStore
from scribbles.core.run_store import KILLED, RUNNING, STORE_RUN_ID

#: The Optuna user attribute holding a trial's MLflow run id (the trial's own run, or the run a repeat repeats).
MLFLOW_RUN = "scribbles.mlflow_run_id"

class Pruned(Exception):
    """The pruner stopped the trial at ``step``; ``reason`` says why, on one line."""

    def __init__(self, step: int, reason: str) -> None:
        self.step, self.reason = step, reason
        super().__init__(f"pruned at step {step}: {reason}")


class Reporter:
    """Reports a run's epochs (or folds) to ``trial`` and raises ``Pruned`` when its pruner says so."""

    def __init__(self, trial: Any, pruner: str, epochs: int, rank_by: str, maximise: bool) -> None:
        self.trial, self.pruner, self.epochs, self.rank_by, self.maximise = trial, pruner, epochs, rank_by, maximise
        # The steps the trial already holds: a trial continued after a kill (``scribbles resume``) trains
        # again the fold the kill cut short; those steps are not reported twice (Optuna keeps the first
        # value and warns), and the pruner already passed them.
        self.reported = set(_held_steps(trial))

    def _report(self, value: float, step: int) -> bool:
        """Report ``value`` at ``step`` unless the trial holds it already; whether it was reported."""
        if step in self.reported:
            return False
        self.trial.report(value, step)
        self.reported.add(step)
        return True

    def started(self, links: dict[str, str]) -> None:
        """The trial's run exists: its MLflow run id goes on the Optuna trial (for resume and the dashboard)."""
        if links.get(STORE_RUN_ID):
            self.trial.set_user_attr(MLFLOW_RUN, links[STORE_RUN_ID])

    def epoch(self, fold: int, epoch: int, values: dict[str, float]) -> None:
        """One epoch of fold ``fold`` finished (per-epoch pruners)."""
        if self.pruner == "wilcoxon" or "valid_loss" not in values:
            return
        value = float(values["valid_loss"])
        if not math.isfinite(value):
            return
        step = fold * self.epochs + epoch
        if not self._report(-value if self.maximise else value, step):
            return
        if self.pruner != "none" and self.trial.should_prune():
            raise Pruned(step, f"{self.pruner} pruner: valid_loss {value:.6g} at fold {fold} epoch {epoch}")

    def fold(self, fold: int, metrics: dict[str, float]) -> None:
        """Fold ``fold`` finished (the Wilcoxon pruner)."""
        if self.pruner != "wilcoxon" or self.rank_by not in metrics:
            return
        value = float(metrics[self.rank_by])
        if not self._report(value, fold):
            return
        if self.trial.should_prune():
            raise Pruned(fold, f"wilcoxon pruner: {self.rank_by} of folds 0..{fold} significantly worse than "
                               "the best trial's on the same folds")


def _held_steps(trial: Any) -> list[int]:
    """The steps ``trial`` (an ``optuna.trial.Trial``, running) holds intermediate values for in its study's
    storage (``FrozenTrial.intermediate_values``)."""
    import optuna

    for frozen in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if frozen.number == trial.number:
            return list(frozen.intermediate_values)
    return []


def mark_pruned(store: RunStore, run_id: str, pruned: Pruned) -> None:
    """End a pruned trial's run KILLED, recording ``pruned`` (step and reason); the fold run the pruner
    cut short too (its finished fold runs stay FINISHED)."""
    reason = {"pruned": f"step {pruned.step}: {pruned.reason}"}
    run = store.get(run_id)
    if run is not None:
        for child in store.runs(store.experiment_name(run.experiment_id), parent=run_id, status=RUNNING):
            store.set_record(child.run_id, reason)
            store.end(child.run_id, KILLED)
    store.set_record(run_id, reason)
    store.end(run_id, KILLED)
