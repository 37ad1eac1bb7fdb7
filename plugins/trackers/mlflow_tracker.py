"""Trackers: ``mlflow`` logs a parent run per experiment run and a nested run per fold.

mlflow is imported inside the methods, so the registry loads where only torch is installed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from scribbles.core import (
    EpochContext,
    FoldContext,
    FoldEndContext,
    RunContext,
    RunEndContext,
    RunErrorContext,
    Technique,
    Tracker,
    hookimpl,
)

MAX_PARAM_LENGTH = 6000


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set, else ``mlflow.db`` (SQLite) in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


class MlflowTracker(Tracker):
    """Log to MLflow: parent run, nested fold runs, params, per-epoch and final metrics, lineage."""

    name = "mlflow"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        tracking_uri: str | None = None

    def __init__(self, params: BaseModel | None = None) -> None:
        super().__init__(params)
        self.client: Any = None
        self.experiment_id = ""
        self.parent_id: str | None = None
        self.fold_ids: dict[int, str] = {}

    # -- helpers

    def _metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(run_id, metrics=batch, synchronous=True)

    def _params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v[:MAX_PARAM_LENGTH]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run_id, params=items[start : start + 100], synchronous=True)

    # -- lifecycle hooks

    @hookimpl
    def scribbles_run_start(self, ctx: RunContext) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(self.params.tracking_uri or tracking_uri())
        experiment = self.client.get_experiment_by_name(ctx.experiment)
        self.experiment_id = (
            experiment.experiment_id if experiment else self.client.create_experiment(ctx.experiment)
        )
        run = self.client.create_run(self.experiment_id, run_name=ctx.run_name or None, tags=ctx.tags)
        self.parent_id = run.info.run_id
        ctx.links["mlflow_run_id"] = self.parent_id
        ctx.links["mlflow_experiment_id"] = self.experiment_id
        ctx.links["mlflow_tracking_uri"] = self.client.tracking_uri
        self._params(self.parent_id, ctx.params)
        dataset = Dataset(
            name=Path(ctx.data_source).stem or "data",
            digest=ctx.data_version[:36],
            source_type="dvc" if ctx.tags.get("scribbles.data_source") == "dvc" else "local",
            source=json.dumps({"path": ctx.data_source, "rev": ctx.data_rev, "md5": ctx.data_version}),
        )
        self.client.log_inputs(
            self.parent_id,
            datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])],
        )
        self.client.log_dict(self.parent_id, ctx.config, "config.yaml")
        for path in ctx.artifacts.values():
            self.client.log_artifact(self.parent_id, str(path))

    @hookimpl
    def scribbles_fold_start(self, ctx: FoldContext) -> None:
        index = ctx.fold.index
        tags = {
            "mlflow.parentRunId": self.parent_id or "",
            "scribbles.fold": str(index),
            **{k: v for k, v in ctx.run.tags.items() if k.startswith("scribbles.")},
        }
        run = self.client.create_run(self.experiment_id, run_name=f"fold-{index}", tags=tags)
        self.fold_ids[index] = run.info.run_id
        self._params(run.info.run_id, ctx.run.params)
        self.client.log_dict(run.info.run_id, ctx.report, "fold_report.json")

    @hookimpl
    def scribbles_epoch_end(self, ctx: EpochContext) -> None:
        self._metrics(self.fold_ids[ctx.fold_index], ctx.metrics, step=ctx.epoch)

    @hookimpl
    def scribbles_fold_end(self, ctx: FoldEndContext) -> None:
        run_id = self.fold_ids.pop(ctx.fold_index)
        self._metrics(run_id, ctx.metrics)
        for path in ctx.artifacts.values():
            self.client.log_artifact(run_id, str(path))
        self.client.set_terminated(run_id, "FINISHED")

    @hookimpl
    def scribbles_run_end(self, ctx: RunEndContext) -> None:
        self._metrics(self.parent_id, ctx.summary)
        self.client.set_terminated(self.parent_id, "FINISHED")
        self.parent_id = None

    @hookimpl
    def scribbles_run_error(self, ctx: RunErrorContext) -> None:
        if self.client is None:
            return
        # Never leave a run RUNNING: every open fold run, then the parent, gets the final status.
        for run_id in list(self.fold_ids.values()):
            self.client.set_terminated(run_id, ctx.status)
        self.fold_ids.clear()
        if self.parent_id:
            message = f"{type(ctx.error).__name__}: {ctx.error}"[:5000]
            self.client.set_tag(self.parent_id, "scribbles.error", message)
            self.client.set_terminated(self.parent_id, ctx.status)
            self.parent_id = None


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [MlflowTracker]
