"""Reading scribbles' own runs back from MLflow: find parent runs, compare them, recover a run's config.

mlflow is imported inside the functions: `scribbles --help` stays fast.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from scribbles.core import BadInput
from scribbles.core import metric_names as naming

#: A parent run carries this tag; fold runs carry it too, plus ``mlflow.parentRunId``.
LINEAGE_TAG = "scribbles.data_version"


def client() -> Any:
    """An MlflowClient on this project's store (``MLFLOW_TRACKING_URI`` or ./mlflow.db)."""
    from scribbles.plugins.trackers import tracking_uri
    from scribbles.plugins.trackers.store import check_store

    uri = tracking_uri()
    # Reading runs back never creates a store: a missing one is an error before MLflow opens (and creates) it.
    check_store(uri, must_exist=True)
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def is_parent(run: Any) -> bool:
    """True for a scribbles parent run (not a fold run, not a run scribbles did not make)."""
    tags = run.data.tags
    return LINEAGE_TAG in tags and "mlflow.parentRunId" not in tags


def parent_runs(mlflow: Any, experiment: str | None, limit: int) -> tuple[str, list[Any]]:
    """The ``limit`` most recent parent runs of ``experiment`` (default: that of the latest parent run)."""
    if experiment is not None:
        found = mlflow.get_experiment_by_name(experiment)
        if found is None:
            names = sorted(e.name for e in mlflow.search_experiments())
            raise BadInput(f"--experiment: no experiment named {experiment!r} in {mlflow.tracking_uri}; "
                           f"experiments: {', '.join(names) or 'none'}")
        ids = [found.experiment_id]
    else:
        ids = [e.experiment_id for e in mlflow.search_experiments()]
    runs = [r for r in mlflow.search_runs(ids, order_by=["attributes.start_time DESC"], max_results=5000)
            if is_parent(r)]
    if not runs:
        where = f"experiment {experiment!r}" if experiment else mlflow.tracking_uri
        raise BadInput(f"no scribbles runs in {where}; run one with `scribbles run CONFIG`")
    if experiment is None:
        latest = runs[0].info.experiment_id
        experiment = mlflow.get_experiment(latest).name
        runs = [r for r in runs if r.info.experiment_id == latest]
    return str(experiment), runs[:limit]


def metric_names(runs: list[Any]) -> list[str]:
    """Base metric names (``accuracy``) that have a ``_mean`` on some run, in first-seen order."""
    found: dict[str, None] = {}
    for run in runs:
        found.update(dict.fromkeys(naming.base_metrics(run.data.metrics)))
    return list(found)


def compare(runs: list[Any]) -> dict[str, Any]:
    """Runs side by side: params that differ, each metric's mean and std with and without TTA, TTA gain."""
    keys = sorted({k for r in runs for k in r.data.params})
    differing = [k for k in keys if len({r.data.params.get(k) for r in runs}) > 1]
    metrics_of = metric_names(runs)
    rows = []
    for run in runs:
        m, tags = run.data.metrics, run.data.tags
        metrics = {}
        for name in metrics_of:
            entry = {"mean": m.get(naming.mean(name)), "std": m.get(naming.std(name)),
                     "tta_mean": m.get(naming.mean(naming.tta(name))), "tta_std": m.get(naming.std(naming.tta(name)))}
            both = entry["mean"] is not None and entry["tta_mean"] is not None
            # The fold-mean gain the run logged: positive when TTA helps, whichever way the metric reads.
            logged = m.get(naming.mean(naming.tta_gain(name)))
            entry["tta_gain"] = (entry["tta_mean"] - entry["mean"] if logged is None else logged) if both else None
            entry["baseline"] = m.get(naming.mean(naming.baseline(name)))  # a model that ignores the features
            metrics[name] = entry
        rows.append({
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            "start_time": run.info.start_time,
            "data_version": tags.get(LINEAGE_TAG, ""),
            "git_commit": tags.get("scribbles.git_commit", ""),
            "split_fingerprint": tags.get("scribbles.split_fingerprint", ""),
            "rerun_of": tags.get("scribbles.rerun_of"),
            "allow_dirty": tags.get("scribbles.allow_dirty") == "true",
            "params": {k: run.data.params.get(k) for k in differing},
            "metrics": metrics,
        })
    # A run with TTA has the transforms among its params (``evaluate.tta.transforms``); without it, "".
    tta = any(k.startswith("evaluate.tta.") for r in runs for k in r.data.params)
    return {"differing_params": differing, "metrics": metrics_of, "runs": rows, "tta": tta}


def find_run(mlflow: Any, run_id: str) -> Any:
    """The run ``run_id``; for a fold run, its parent. BadInput when the store has no such run."""
    from mlflow.exceptions import MlflowException

    try:
        run = mlflow.get_run(run_id)
    except MlflowException:
        raise BadInput(f"RUN_ID: no run {run_id!r} in {mlflow.tracking_uri}; "
                       "`scribbles compare` lists the recent ones") from None
    parent = run.data.tags.get("mlflow.parentRunId")
    if parent:
        run = mlflow.get_run(parent)
    if LINEAGE_TAG not in run.data.tags:
        raise BadInput(f"RUN_ID: run {run_id} was not made by scribbles (it has no {LINEAGE_TAG} tag)")
    return run


def run_config(mlflow: Any, run: Any) -> dict[str, Any]:
    """The resolved config a run recorded (its ``config.yaml`` artifact)."""
    with tempfile.TemporaryDirectory(prefix="scribbles-rerun-") as tmp:
        for name in ("config.yaml", "resolved_config.yaml", "sweep_config.yaml"):
            try:
                path = mlflow.download_artifacts(run.info.run_id, name, tmp)
            except Exception:  # try the other name; the error below says what is missing
                continue
            config = yaml.safe_load(Path(path).read_text())
            if isinstance(config, dict):
                return config
    raise BadInput(f"RUN_ID: run {run.info.run_id} has no config.yaml artifact to rerun from")
