"""``scribbles store migrate --to URI``: copy a laptop's MLflow store (SQLite) onto the team's server.

Every active experiment and run is copied through MLflow's own client: experiments (with their tags),
runs in start order (parents before folds, a cached fold's source before the fold that reused it),
params, every metric's full history (step and timestamp kept), tags, dataset inputs, artifacts, the
parent's logged model, and each run's status, start and end time. MLflow gives every copied run a new
id: the copy carries ``scribbles.migrated_from`` = the source id, and every tag whose value is a copied
run's id (``mlflow.parentRunId``, ``scribbles.cached_from``, ...) is rewritten to the new id, so that
nesting, the fold cache (cache key, result hash and a FINISHED source) and ``scribbles rerun`` work on
the server. A run already copied (found by ``scribbles.migrated_from``) is skipped: migrate resumes.

Why not mlflow-export-import (1.2.0, Feb 2023, the latest on PyPI): it installs, but every run it
imports ends FINISHED whatever its source status (a FAILED fold would become a cache source and
``resume`` would have nothing to finish), start and end times become the import time, id-valued tags
other than the parent's keep pointing at source ids (``scribbles.cached_from``), it copies through an
export folder on disk, and it pulls pytest and pytest-html in as runtime dependencies.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scribbles.core.run_store import Migration

from .names import LOGGED_MODEL_TAG, MIGRATED_TAG, MODEL_FOLDER, PARENT_TAG, tag

#: MLflow's batch limits (mlflow.utils.validation): params/tags 100, metrics 1000 per log_batch call.
PARAMS_PER_BATCH, METRICS_PER_BATCH = 100, 1000


def migrate(source: str, target: str, progress: Callable[[str], None] = lambda line: None) -> Migration:
    """Copy every active experiment and run of the store ``source`` into ``target`` (tracking URIs).

    Raises MlflowException (from MLflow's client) when either store refuses a call.
    """
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    src, dst = MlflowClient(source), MlflowClient(target)
    done = Migration()
    runs: list[tuple[Any, str]] = []
    for experiment in src.search_experiments(view_type=ViewType.ACTIVE_ONLY):
        found = src.search_runs([experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=50000)
        if not found and experiment.name == "Default":
            continue
        target_id = _experiment(dst, experiment)
        done.experiments += 1
        done.run_ids.update(_already_copied(dst, target_id))
        runs += [(run, target_id) for run in found]
    # Start order: a parent starts before its folds, a cache source before the run that reuses it.
    runs.sort(key=lambda item: (item[0].info.start_time or 0, _depth(item[0])))
    for run, target_id in runs:
        if run.info.run_id in done.run_ids:
            done.skipped += 1
            continue
        done.run_ids[run.info.run_id] = _copy_run(src, dst, run, target_id, done)
        done.runs += 1
        progress(f"copied run {run.info.run_id} -> {done.run_ids[run.info.run_id]} ({run.info.run_name})")
    return done


def _depth(run: Any) -> int:
    return 1 if PARENT_TAG in run.data.tags else 0


def _experiment(dst: Any, experiment: Any) -> str:
    """The target's experiment of the same name (created with the source's tags when missing)."""
    existing = dst.get_experiment_by_name(experiment.name)
    tags = {k: v for k, v in experiment.tags.items() if not k.startswith("mlflow.")}
    if existing is None:
        return str(dst.create_experiment(experiment.name, tags=tags))
    for key, value in tags.items():
        if existing.tags.get(key) != value:
            dst.set_experiment_tag(existing.experiment_id, key, value)
    return str(existing.experiment_id)


def _already_copied(dst: Any, experiment_id: str) -> dict[str, str]:
    """Source run id -> target run id of the runs an earlier migration copied into ``experiment_id``."""
    from mlflow.entities import ViewType

    found = dst.search_runs([experiment_id], f"tags.`{MIGRATED_TAG}` != ''", run_view_type=ViewType.ACTIVE_ONLY,
                            max_results=50000)
    return {run.data.tags[MIGRATED_TAG]: run.info.run_id for run in found}


def _copy_run(src: Any, dst: Any, run: Any, experiment_id: str, done: Migration) -> str:
    """Copy one run; returns its id in the target."""
    from mlflow.entities import Metric, Param, RunTag

    ids = done.run_ids
    tags = {key: ids.get(value, value) for key, value in run.data.tags.items() if key != LOGGED_MODEL_TAG}
    # scribbles.migrated_from comes last, once the copy is whole: a half-copied run is copied again.
    new = dst.create_run(experiment_id, start_time=run.info.start_time, tags=tags, run_name=run.info.run_name)
    new_id = new.info.run_id
    try:
        params = [Param(key, value) for key, value in run.data.params.items()]
        for start in range(0, len(params), PARAMS_PER_BATCH):
            dst.log_batch(new_id, params=params[start:start + PARAMS_PER_BATCH], synchronous=True)
        done.params += len(params)
        metrics = [Metric(m.key, m.value, m.timestamp, m.step)
                   for key in run.data.metrics for m in src.get_metric_history(run.info.run_id, key)]
        for start in range(0, len(metrics), METRICS_PER_BATCH):
            dst.log_batch(new_id, metrics=metrics[start:start + METRICS_PER_BATCH], synchronous=True)
        done.metrics += len(metrics)
        if run.inputs and run.inputs.dataset_inputs:
            dst.log_inputs(new_id, datasets=list(run.inputs.dataset_inputs))
        with tempfile.TemporaryDirectory() as tmp:
            if src.list_artifacts(run.info.run_id):
                local = Path(src.download_artifacts(run.info.run_id, "", tmp))
                dst.log_artifacts(new_id, str(local))
                done.artifacts += sum(1 for p in local.rglob("*") if p.is_file())
                if LOGGED_MODEL_TAG in run.data.tags and (local / MODEL_FOLDER).is_dir():
                    _logged_model(dst, experiment_id, new_id, local / MODEL_FOLDER, run.data.tags)
        dst.log_batch(new_id, tags=[RunTag(MIGRATED_TAG, run.info.run_id)], synchronous=True)
        dst.set_terminated(new_id, status=run.info.status, end_time=run.info.end_time)
    except BaseException:
        dst.set_terminated(new_id, status="FAILED")  # a half-copied run never looks FINISHED
        dst.delete_run(new_id)  # and is not taken as copied: the next migrate copies it again
        raise
    return str(new_id)


def _logged_model(dst: Any, experiment_id: str, run_id: str, folder: Path, tags: dict[str, str]) -> None:
    """The parent's logged model (MLflow 3), made again in the target from the copied model folder."""
    from mlflow.entities import LoggedModelOutput, RunTag

    flavour = tags.get(tag("model_flavour"))
    logged = dst.create_logged_model(experiment_id, name="model", source_run_id=run_id,
                                     tags={tag("model_fold"): tags.get(tag("model_fold"), "")},
                                     model_type=flavour)
    dst.log_model_artifacts(logged.model_id, str(folder))
    dst.finalize_logged_model(logged.model_id, "READY")
    dst.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    dst.log_batch(run_id, tags=[RunTag(LOGGED_MODEL_TAG, logged.model_id)], synchronous=True)
