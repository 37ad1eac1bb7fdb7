"""One experiment run: data -> folds (leakage guard) -> train -> evaluate with and without TTA -> aggregate.

Trackers and the progress display see every step through the lifecycle hooks (flows/lifecycle.py); the
sequencing lives here, never in hook order. Tasks exchange references (config, data version, fold index,
paths), never DataFrames or tensors: a fold trains inline, in a process pool (``train.parallel_folds``)
or on a Dask cluster (``train.dask_address``). A fold whose inputs match an earlier finished fold is
reused from it (recording ``cached_from``) unless ``force``; ``continues`` finishes a stopped parent run
in place. Sweeps (flows/experiment.py, flows/search.py) run one of these per trial.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scribbles.core import (
    Dataset,
    EpochContext,
    Fold,
    FoldContext,
    FoldEndContext,
    Plan,
    Registry,
    RunContext,
    stops_deferred,
)
from scribbles.core import metric_names as naming
from scribbles.core.data import Repeated, fold_report
from scribbles.core.errors import ScribblesError
from scribbles.core.evaluation import tta_groups
from scribbles.core.fingerprint import split_fingerprint
from scribbles.core.plan import flatten
from scribbles.core.redact import mask_text
from scribbles.core.run_store import STORE_RUN_ID

from . import fold_task, fold_worker
from .failures import as_failure
from .fold_cache import CODE_KEY, FoldCache, Inputs, Reuse, code_version, explain, keyed_params
from .fold_outputs import read_outputs
from .fold_task import FoldJob, FoldResult, plan_for, run_job
from .interrupts import interruption
from .lifecycle import run_lifecycle
from .lineage import git_commit, plugin_versions
from .prefect_env import configure_prefect
from .prefect_server import ServerLost
from .pruning import Pruned, Reporter, mark_pruned
from .redact import mask_params, mask_tree
from .stores import store_of

configure_prefect()

from prefect import task  # noqa: E402  (configure_prefect must run first)
from prefect.cache_policies import NO_CACHE  # noqa: E402

configure_prefect()  # prefect's own logging setup resets logger levels on import


#: Why a fold trained when asked to: `scribbles run --force`, or `scribbles rerun` (which always trains).
FORCED = "asked to train again (--force, or `scribbles rerun`)"


@task(name="load-data", cache_policy=NO_CACHE)
def load_data(config: dict[str, Any], allow_dirty: bool) -> str:
    """Read the data through its source (once per process); returns the data version."""
    plan, _ = plan_for(config, allow_dirty)
    return fold_task.dataset_for(plan).version


@task(name="make-folds", cache_policy=NO_CACHE)
def make_folds(config: dict[str, Any], allow_dirty: bool) -> int:
    """Every fold of the splitter, each passed through the leakage guard before any training; the count."""
    plan, _ = plan_for(config, allow_dirty)
    return len(fold_task.folds_for(plan))


@task(name="train-fold", cache_policy=NO_CACHE)
def train_fold(job: FoldJob) -> FoldResult:
    """Train one fold and evaluate it with and without TTA (see ``fold_task.run_job``): the run's fold
    worker's result when it trained the fold (``fold_worker``), else trained here."""
    result = fold_worker.result_for(job, fold_task.live_callback(job.out))
    return result if result is not None else run_job(job)


def summarise(metrics: list[dict[str, float]]) -> dict[str, float]:
    """Mean and standard deviation across folds of every final metric."""
    summary: dict[str, float] = {}
    for name in metrics[0]:
        values = np.array([m[name] for m in metrics if name in m])  # a fold kept from older code may lack one
        summary[naming.mean(name)] = float(values.mean())
        summary[naming.std(name)] = float(values.std())
    return summary


def run_context(
    plan: Plan, dataset: Dataset, n_folds: int, workdir: Path, folds: list[Fold] | None = None,
    plots: Path | None = None,
) -> RunContext:
    """Params, lineage tags and artifacts of a run (with ``folds``, the fold timeline plot); secrets masked.

    With ``plots`` (a sweep's folder) the timeline is drawn there once per data and split, and trials
    with the same folds share it instead of drawing it again.
    """
    config = mask_tree(plan.resolved)
    config_path = workdir / "resolved_config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    artifacts = {"config": config_path}
    if folds:
        from .plots import fold_timeline

        folder = workdir if plots is None else plots / hashlib.sha256(fold_task.folds_key(plan).encode()).hexdigest()
        timeline = folder / "fold_timeline.png"
        if not timeline.exists():
            folder.mkdir(parents=True, exist_ok=True)
            fold_timeline(dataset, folds, timeline, plan.splitter.name)
        artifacts["fold_timeline"] = timeline
    tags = {
        "data_version": dataset.version,
        "data_source": plan.data.name,
        "data_path": dataset.source,
        "git_commit": git_commit(),
        "splitter": plan.splitter.name,
        "strategy": plan.strategy.name,
        "plugins": plugin_versions(),
        "seed": str(plan.config.train.seed),
        "world_size": str(plan.config.train.workers * plan.config.train.nodes),
        # Who runs it: `scribbles resume` refuses a RUNNING run whose process is still alive.
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
    }
    if plan.resolved["data"].get("allow_dirty"):
        tags["allow_dirty"] = "true"
    tags["greater_is_better"] = json.dumps({m.name: bool(m.greater_is_better) for m in plan.metrics})
    if folds:
        tags.update(split_fingerprint(dataset.version, plan.resolved["split"], folds))
    if isinstance(plan.splitter, Repeated):
        tags["repeats"] = str(plan.splitter.repeats)
        tags["folds_per_repeat"] = str(len(folds or []) // plan.splitter.repeats)
    return RunContext(
        experiment=plan.experiment,
        config=config,
        params=mask_params(flatten(config)),
        tags={key: mask_text(value) for key, value in tags.items()},  # a data path may be a URL with a password
        data_version=dataset.version,
        data_source=mask_text(dataset.source),
        data_rev=mask_text(dataset.rev) if dataset.rev else dataset.rev,
        n_folds=n_folds,
        artifacts=artifacts,
    )


def task_runner(plan: Plan) -> Any:
    """The task runner that trains folds in parallel, or None to train them one by one in this process."""
    train = plan.config.train
    if train.dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=train.dask_address)
    if train.parallel_folds > 1:
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=train.parallel_folds)
    return None


def decide(plan: Plan, run: RunContext, folds: list[Fold], force: bool) -> list[Reuse]:
    """Per fold: reuse this parent's finished fold (resume), an identical earlier fold (cache), or train."""
    inputs = Inputs(keyed_params(run.params), run.data_version, run.tags[CODE_KEY], run.tags["plugins"])
    store = store_of(plan)
    cache = FoldCache(store, run.experiment) if store is not None else None
    finished = cache.finished_folds(run.continues[STORE_RUN_ID]) if cache and run.continues else {}
    out = []
    for fold in folds:
        key = inputs.key(fold.index)
        if fold.index in finished and cache is not None:
            saved = cache.record(finished[fold.index])
            if not isinstance(saved, str):
                source = finished[fold.index].run_id
                reason = f"finished before the stop (run {source})"
                out.append(Reuse(key, "resumed", source, saved[0], saved[1], reason))
                continue
        if cache is None:
            out.append(Reuse(key, reason="no MLflow tracker to cache in"))
        elif force:
            out.append(Reuse(key, reason=FORCED))
        elif (found := cache.find(key))[0] is not None:
            out.append(found[0])
        elif found[1]:  # an identical fold exists but cannot be trusted: say why it is trained again
            out.append(Reuse(key, reason=found[1]))
        elif run.continues:  # resumed: the fold is trained because the stop came first, whatever ran before
            out.append(Reuse(key, reason="not finished before the stop"))
        else:
            before = cache.previous_inputs(fold.index)
            out.append(Reuse(key, reason=explain(inputs, before) if before else "first run of this fold"))
    return out


def _run_folds(plan: Plan, registry: Registry, run: RunContext, dataset: Dataset, folds: list[Fold],
               job: FoldJob, force: bool, reporter: Reporter | None = None) -> dict[str, Any]:
    hook = registry.hook
    classes = [] if plan.config.task == "regression" else [str(c) for c in dataset.classes]
    metrics: dict[int, dict[str, float]] = {}

    def start(fold: Fold, reuse: Reuse) -> None:
        hook.scribbles_fold_start(ctx=FoldContext(
            run, fold, fold_report(dataset, fold), key=reuse.key, reuse=reuse.mode, reused_from=reuse.source,
            reason=reuse.reason,
        ))

    def epoch(index: int, number: int, values: dict[str, float]) -> None:
        hook.scribbles_epoch_end(ctx=EpochContext(run, index, number, values))
        if reporter is not None:  # an Optuna trial: may raise Pruned (flows/pruning.py)
            reporter.epoch(index, number, values)

    def finish(fold: Fold, reuse: Reuse, result: FoldResult) -> None:
        if reuse.mode != "resumed" and not result.live:
            for number, values in enumerate(result.history):
                hook.scribbles_epoch_end(ctx=EpochContext(run, fold.index, number, values))
        outputs = read_outputs(result.outputs, registry)
        artifacts: dict[str, Path] = {}
        groups = fold_task.group_folder(job.out, fold.index) / "group_metrics.csv"
        if not reuse.mode and groups.exists():
            artifacts["group_metrics"] = groups
        hook.scribbles_fold_end(ctx=FoldEndContext(
            run, fold.index, result.metrics, artifacts=artifacts, model=outputs.get("model"),
            input_example=outputs.get("input_example"), y_true=outputs.get("y_true"), y_pred=outputs.get("y_pred"),
            classes=classes, reuse=reuse.mode, reused_from=reuse.source, history=list(result.history),
        ))
        metrics[fold.index] = result.metrics
        if reporter is not None and reuse.mode != "resumed":
            if not result.live:  # trained in another process: its epochs are reported now, in order
                for number, values in enumerate(result.history):
                    reporter.epoch(fold.index, number, values)
            reporter.fold(fold.index, result.metrics)

    pruned: Pruned | None = None
    with run_lifecycle(registry, run, plan.trackers) as ending:
        if reporter is not None:
            reporter.started(run.links)
        decisions = decide(plan, run, folds, force)
        jobs = [(fold, reuse, FoldJob(**{**job.__dict__, "fold": fold.index})) for fold, reuse in
                zip(folds, decisions, strict=True)]
        to_train = [(fold, reuse, fold_job) for fold, reuse, fold_job in jobs if not reuse.mode]
        runner = task_runner(plan)
        try:
            # Reused results first: nothing to wait for. Inside the try: a trial's pruner may stop it on a
            # reused fold's scores too (the trial then ended FAILED, "Pruned: ...", as if it had crashed).
            for fold, reuse, _ in jobs:
                if reuse.mode:
                    start(fold, reuse)
                    finish(fold, reuse, _reused(fold, reuse))
            if runner is None:
                fold_worker.decided([fold.index for fold, _, _ in to_train])
                with fold_task.live_epochs(job.out, epoch):
                    for fold, reuse, fold_job in to_train:
                        start(fold, reuse)
                        result = train_fold(fold_job)
                        if result.pruned is not None:  # the pruner stopped it mid-fold (pruning.py)
                            raise Pruned(*result.pruned)
                        finish(fold, reuse, result)
            else:
                with runner:
                    futures = []
                    for fold, reuse, fold_job in to_train:
                        start(fold, reuse)
                        futures.append((fold, reuse, runner.submit(train_fold, {"job": fold_job})))
                    for fold, reuse, future in futures:
                        finish(fold, reuse, future.result())
        except Pruned as stop:  # the folds that finished are kept; the trial ends KILLED (pruning.py)
            pruned = stop
        summary = summarise([metrics[i] for i in sorted(metrics)]) if metrics else {}
        # Inside the lifecycle: a tracker failing to finish must still end the runs FAILED. A pruned trial's
        # end and its KILLED are one step (stops held): a stop between them left the trial FINISHED.
        with stops_deferred() if pruned is not None else contextlib.nullcontext():
            ending.end(summary)
            if pruned is not None and run.links.get(STORE_RUN_ID) and (store := store_of(plan)) is not None:
                mark_pruned(store, run.links[STORE_RUN_ID], pruned)
    return {
        "experiment": run.experiment,
        "links": dict(run.links),
        "data_version": run.data_version,
        "metrics": [m.name for m in plan.metrics],
        "greater_is_better": {m.name: bool(m.greater_is_better) for m in plan.metrics},
        "task": plan.config.task,
        "transforms": [label for label, _ in tta_groups(plan.tta)],
        "folds": [{"fold": i, **metrics[i]} for i in sorted(metrics)],
        "fold_rows": {fold.index: [len(fold.train), len(fold.valid)] for fold in folds},
        "split_fingerprint": run.tags.get("split_fingerprint", ""),
        "reuse": [{"fold": fold.index, "mode": reuse.mode, "source": reuse.source, "reason": reuse.reason}
                  for fold, reuse in zip(folds, decisions, strict=True)],
        "summary": summary,
        **({"pruned": {"step": pruned.step, "reason": pruned.reason}} if pruned is not None else {}),
    }


def _reused(fold: Fold, reuse: Reuse) -> FoldResult:
    return FoldResult(fold.index, dict(reuse.metrics), list(reuse.history))


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    """A folder of this run's own under the project's .scribbles/ (shared with Dask workers there)."""
    path = Path.cwd() / ".scribbles" / "runs" / uuid.uuid4().hex[:12]
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_one(config: dict[str, Any], allow_dirty: bool = False, tags: dict[str, str] | None = None,
            force: bool = False, continues: dict[str, str] | None = None, parent: RunContext | None = None,
            run_name: str = "", plots: Path | None = None, reporter: Reporter | None = None) -> dict[str, Any]:
    """One experiment run (a sweep trial when ``parent`` is the sweep's run, ``plots`` its shared plots;
    ``reporter`` reports its epochs or folds to an Optuna trial, which may prune it)."""
    plan, registry = plan_for(config, allow_dirty)
    # Tasks run only for work this process has not done yet: a sweep loads its data once.
    if not fold_task.is_loaded(plan):
        load_data(config, allow_dirty)
    if not fold_task.has_folds(plan):
        make_folds(config, allow_dirty)
    dataset, folds = fold_task.dataset_for(plan), fold_task.folds_for(plan)
    with _workdir() as work:
        run = run_context(plan, dataset, len(folds), work, folds, plots)
        run.tags.update(tags or {})
        run.tags[CODE_KEY] = code_version()
        run.parent, run.continues, run.run_name = parent, dict(continues or {}), run_name
        job = FoldJob(config, allow_dirty, -1, dataset.version, str(Path.cwd()), str(work / "outputs"))
        try:
            return _run_folds(plan, registry, run, dataset, folds, job, force, reporter)
        except Exception as exc:
            if parent is None or isinstance(exc, ServerLost) or as_failure(exc) is not None \
                    or interruption(exc) is not None:
                raise  # not a sweep, the machine failed (the next trial would fail the same way), or a stop
            # A sweep goes on without this trial; its runs are already FAILED (see _run_folds).
            raise TrialFailed(exc, dict(run.links)) from exc


class TrialFailed(ScribblesError):
    """A sweep trial failed; ``links`` are its runs' (the MLflow run id), ``reason`` the error on one line."""

    def __init__(self, error: Exception, links: dict[str, str]) -> None:
        self.reason = " ".join(f"{type(error).__name__}: {error}".split())[:500]
        if isinstance(error, ScribblesError):
            self.reason = " ".join(str(error).split())[:500]
        self.links = links
        super().__init__(self.reason)


def rank(results: list[dict[str, Any]], metric: str, greater: bool) -> list[dict[str, Any]]:
    """Trials best first by ``{metric}_mean``; a trial without it goes last."""
    def score(result: dict[str, Any]) -> float:
        value = result["summary"].get(f"{metric}_mean")
        if value is None or not np.isfinite(value):
            return float("inf")
        return -value if greater else value

    return sorted(results, key=score)


