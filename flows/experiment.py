"""The experiment flow: data -> folds (leakage guard) -> train -> evaluate with and without TTA -> aggregate.

Trackers and the progress display see every step through the lifecycle hooks; the sequencing lives
here, never in hook order.
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from scribbles.core import (
    Dataset,
    EpochContext,
    Fold,
    FoldContext,
    FoldEndContext,
    ModelSpec,
    Plan,
    Registry,
    RunContext,
    RunEndContext,
    RunErrorContext,
    registry_for,
    resolve,
)
from scribbles.core.config import parse_config
from scribbles.core.evaluation import evaluate_groups, tta_groups, tta_metrics
from scribbles.core.guard import fold_report, guarded_folds
from scribbles.core.plan import flatten
from scribbles.core.pretraining import model_builder
from scribbles.core.serving import Standardised

from .data_guard import allow_dirty_data
from .lineage import git_commit, plugin_versions
from .prefect_env import configure_prefect
from .redact import mask_params, mask_tree

configure_prefect()

from prefect import flow, task  # noqa: E402  (configure_prefect must run first)
from prefect.cache_policies import NO_CACHE  # noqa: E402

configure_prefect()  # prefect's own logging setup resets logger levels on import


class Terminated(KeyboardInterrupt):
    """SIGTERM, what a scheduler sends to cancel; handled like Ctrl-C."""


@dataclass
class FoldOutcome:
    """What one fold produced: final metrics (plain and ``_tta``) and its per-epoch history."""

    index: int
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    #: What trackers keep: the model (on raw features), a few raw rows, valid targets and predictions.
    model: Any = None
    input_example: Any = None
    y_true: Any = None
    y_pred: Any = None


@task(name="load-data", cache_policy=NO_CACHE)
def load_data(plan: Plan) -> Dataset:
    """Read the data through its source; the dataset carries its version."""
    return plan.data.load()


@task(name="make-folds", cache_policy=NO_CACHE)
def make_folds(plan: Plan, dataset: Dataset) -> list[Fold]:
    """Every fold of the splitter, each passed through the leakage guard before any training."""
    return guarded_folds(plan.splitter, dataset)


def tensors(dataset: Dataset, rows: np.ndarray, mean: float, std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised inputs and integer targets of ``rows``."""
    x = (dataset.inputs(rows) - mean) / std
    return torch.from_numpy(x), torch.from_numpy(dataset.labels(rows))


@task(name="train-fold", cache_policy=NO_CACHE)
def train_fold(plan: Plan, registry: Registry, run: RunContext, dataset: Dataset, fold: Fold) -> FoldOutcome:
    """Train on the fold's train rows, then evaluate its valid rows with and without TTA."""
    # Standardise with statistics of the training rows only: the valid rows must not leak into them.
    train_x = dataset.inputs(fold.train)
    mean, std = float(train_x.mean()), float(train_x.std()) or 1.0
    train, valid = tensors(dataset, fold.train, mean, std), tensors(dataset, fold.valid, mean, std)
    spec = ModelSpec(dataset.kind, tuple(dataset.shape), len(dataset.classes), tuple(map(str, dataset.classes)))

    def on_epoch(epoch: int, metrics: Any) -> None:
        registry.hook.scribbles_epoch_end(ctx=EpochContext(run, fold.index, epoch, dict(metrics)))

    result = plan.strategy.fit(
        model_builder(plan.model, spec, train[0], plan.config.train),
        plan.loss.build(spec),
        torch.utils.data.TensorDataset(*train),
        torch.utils.data.TensorDataset(*valid),
        plan.config.train,
        [on_epoch],
    )
    tta = plan.config.evaluate.tta
    probs = evaluate_groups(
        result.model,
        valid[0],
        tta_groups(plan.tta),
        plan.merge,
        (tta.chunk if tta else None) or plan.config.train.batch_size * 4,
        beta=tta.beta if tta else 0.25,
        mode=tta.mode if tta else "auto",
    )
    metrics = tta_metrics(plan.metrics, valid[1].numpy(), probs, result.model, valid[0])
    y_true = valid[1].numpy()
    model = result.model
    example = dataset.inputs(fold.valid[:5])
    if isinstance(model, torch.nn.Module):
        model = Standardised(model, mean, std)  # the logged model takes raw features
    else:
        example = (example - mean) / std
    return FoldOutcome(fold.index, metrics, result.history, model, example, y_true, probs.plain.argmax(1))


def summarise(outcomes: list[FoldOutcome]) -> dict[str, float]:
    """Mean and standard deviation across folds of every final metric."""
    summary: dict[str, float] = {}
    for name in outcomes[0].metrics:
        values = np.array([o.metrics[name] for o in outcomes])
        summary[f"{name}_mean"] = float(values.mean())
        summary[f"{name}_std"] = float(values.std())
    return summary


def run_context(
    plan: Plan, dataset: Dataset, n_folds: int, workdir: Path, folds: list[Fold] | None = None
) -> RunContext:
    """Params, lineage tags and artifacts of a run (with ``folds``, the fold timeline plot); secrets masked."""
    config = mask_tree(plan.resolved)
    config_path = workdir / "resolved_config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    artifacts = {"config": config_path}
    if folds:
        from .plots import fold_timeline

        timeline = workdir / "fold_timeline.png"
        artifacts["fold_timeline"] = fold_timeline(dataset, folds, timeline, plan.splitter.name)
    tags = {
        "scribbles.data_version": dataset.version,
        "scribbles.data_source": plan.data.name,
        "scribbles.data_path": dataset.source,
        "scribbles.git_commit": git_commit(),
        "scribbles.splitter": plan.splitter.name,
        "scribbles.strategy": plan.strategy.name,
        "scribbles.plugins": plugin_versions(),
        "scribbles.seed": str(plan.config.train.seed),
        "scribbles.world_size": str(plan.config.train.workers * plan.config.train.nodes),
    }
    if plan.resolved["data"].get("allow_dirty"):
        tags["scribbles.allow_dirty"] = "true"
    return RunContext(
        experiment=plan.experiment,
        config=config,
        params=mask_params(flatten(config)),
        tags=tags,
        data_version=dataset.version,
        data_source=dataset.source,
        data_rev=dataset.rev,
        n_folds=n_folds,
        artifacts=artifacts,
    )


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into ``Terminated`` (in the main thread) so that open runs end KILLED."""
    def handler(signum: int, frame: Any) -> None:
        raise Terminated("stopped by SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def sigterm_ignored() -> Iterator[None]:
    """Ignore SIGTERM (in the main thread) while open runs are being ended."""
    try:
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: Plugins (a progress display, say) that the caller wants to see this process's runs.
_OBSERVERS: list[Any] = []


@contextlib.contextmanager
def observing(*plugins: Any) -> Iterator[None]:
    """Register ``plugins`` for the lifecycle hooks of every run started inside the block."""
    _OBSERVERS.extend(plugins)
    try:
        yield
    finally:
        for plugin in plugins:
            _OBSERVERS.remove(plugin)


@flow(name="scribbles-experiment", validate_parameters=False)
def experiment(
    config: dict[str, Any], allow_dirty: bool = False, tags: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run one experiment from a config mapping; return per-fold metrics and their summary.

    ``allow_dirty`` reads data that differ from what DVC records (the run is tagged
    ``scribbles.allow_dirty``); ``tags`` are added to the run's tags (``scribbles.rerun_of``, say).
    """
    parsed = parse_config(config)
    registry = registry_for(parsed)
    if allow_dirty:
        parsed = allow_dirty_data(parsed, registry)
    plan = resolve(parsed, registry)
    dataset = load_data(plan)
    folds = make_folds(plan, dataset)
    plugins = [*plan.trackers, *_OBSERVERS]
    for plugin in plugins:
        registry.pm.register(plugin)
    try:
        with tempfile.TemporaryDirectory(prefix="scribbles-") as tmp:
            run = run_context(plan, dataset, len(folds), Path(tmp), folds)
            run.tags.update(tags or {})
            return _run_folds(plan, registry, run, dataset, folds)
    finally:
        for plugin in plugins:
            registry.pm.unregister(plugin)


def _run_folds(
    plan: Plan, registry: Registry, run: RunContext, dataset: Dataset, folds: list[Fold]
) -> dict[str, Any]:
    hook = registry.hook
    hook.scribbles_run_start(ctx=run)
    try:
        with sigterm_as_interrupt():
            outcomes = []
            for fold in folds:
                hook.scribbles_fold_start(ctx=FoldContext(run, fold, fold_report(dataset, fold)))
                outcome = train_fold(plan, registry, run, dataset, fold)
                hook.scribbles_fold_end(ctx=FoldEndContext(
                    run, fold.index, outcome.metrics, model=outcome.model, input_example=outcome.input_example,
                    y_true=outcome.y_true, y_pred=outcome.y_pred, classes=[str(c) for c in dataset.classes],
                ))
                outcomes.append(outcome)
            summary = summarise(outcomes)
            # Inside the try: a tracker failing to finish must still end the runs FAILED.
            hook.scribbles_run_end(ctx=RunEndContext(run, summary))
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        with sigterm_ignored():  # a second SIGTERM must not cut the final statuses short
            hook.scribbles_run_error(ctx=RunErrorContext(run, exc, status))
        raise
    return {
        "experiment": run.experiment,
        "links": dict(run.links),
        "data_version": run.data_version,
        "metrics": [m.name for m in plan.metrics],
        "transforms": [label for label, _ in tta_groups(plan.tta)],
        "folds": [{"fold": o.index, **o.metrics} for o in outcomes],
        "summary": summary,
    }
