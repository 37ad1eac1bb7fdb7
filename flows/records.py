"""Reading scribbles' own runs back for `compare`, `rerun` and `resume`, through the tracker's run store.

The store (``scribbles.core.run_store.RunStore``) comes from ``flows.stores.open_store``; nothing here
knows how the tracker names what it keeps.
"""

from __future__ import annotations

from typing import Any

import yaml
from scribbles.core import BadInput, RunStore, StoredRun
from scribbles.core import metric_names as naming
from scribbles.core.run_store import CONFIG
from scribbles.core.run_store import find_run as find_run


def parent_runs(store: RunStore, experiment: str | None, limit: int) -> tuple[str, list[StoredRun]]:
    """The ``limit`` most recent parent runs of ``experiment`` (default: that of the latest parent run)."""
    if experiment is not None and experiment not in store.experiment_names():
        names = store.experiment_names()
        raise BadInput(f"--experiment: no experiment named {experiment!r} in {store.shown}; "
                       f"experiments: {', '.join(names) or 'none'}")
    runs = [r for r in store.runs(experiment, limit=5000) if r.is_parent]
    if not runs:
        where = f"experiment {experiment!r}" if experiment else store.shown
        raise BadInput(f"no scribbles runs in {where}; run one with `scribbles run CONFIG`")
    if experiment is None:
        latest = runs[0].experiment_id
        experiment = store.experiment_name(latest)
        runs = [r for r in runs if r.experiment_id == latest]
    return str(experiment), runs[:limit]


def metric_names(runs: list[StoredRun]) -> list[str]:
    """Base metric names (``accuracy``) that have a ``_mean`` on some run, in first-seen order."""
    found: dict[str, None] = {}
    for run in runs:
        found.update(dict.fromkeys(naming.base_metrics(dict(run.metrics))))
    return list(found)


def compare(runs: list[StoredRun]) -> dict[str, Any]:
    """Runs side by side: params that differ, each metric's mean and std with and without TTA, TTA gain."""
    keys = sorted({k for r in runs for k in r.params})
    differing = [k for k in keys if len({r.params.get(k) for r in runs}) > 1]
    metrics_of = metric_names(runs)
    rows = []
    for run in runs:
        m, record = run.metrics, run.record
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
            "run_id": run.run_id,
            "run_name": run.name,
            "status": run.status,
            "start_time": run.start_time,
            "data_version": record.get("data_version", ""),
            "git_commit": record.get("git_commit", ""),
            "split_fingerprint": record.get("split_fingerprint", ""),
            "rerun_of": record.get("rerun_of"),
            "allow_dirty": record.get("allow_dirty") == "true",
            "params": {k: run.params.get(k) for k in differing},
            "metrics": metrics,
        })
    # A run with TTA has the transforms among its params (``evaluate.tta.transforms``); without it, "".
    tta = any(k.startswith("evaluate.tta.") for r in runs for k in r.params)
    return {"differing_params": differing, "metrics": metrics_of, "runs": rows, "tta": tta}


def run_config(store: RunStore, run: StoredRun) -> dict[str, Any]:
    """The resolved config a run recorded."""
    raw = store.artifact(run.run_id, CONFIG)
    config = yaml.safe_load(raw) if raw is not None else None
    if not isinstance(config, dict):
        raise BadInput(f"RUN_ID: run {run.run_id} has no config.yaml artifact to rerun from")
    return config
