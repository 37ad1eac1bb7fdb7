"""The train-fold task: one fold trained and evaluated from references, in this process or any other.

A task gets a ``FoldJob`` (the config, the data version, the fold's index, a folder to leave its outputs
in) and returns a ``FoldResult`` (metrics, per-epoch history, the path of its outputs): references,
never DataFrames or tensors, so the same task runs inline, in a process pool, or on a Dask worker of
another machine. Each process loads the data and makes the folds once (memoised on their config).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scribbles.core import BadInput, Dataset, Fold, Plan, Registry, registry_for, resolve
from scribbles.core.config import parse_config
from scribbles.core.data import check_steps, check_target, fold_inputs, guarded_folds, targets
from scribbles.core.evaluation import baseline_metrics, by_group, evaluate_groups, tta_groups, tta_metrics, write_groups
from scribbles.core.training import early_stopping, model_builder

from .data_guard import allow_dirty_data
from .fold_outputs import write_outputs
from .pruning import Pruned


@dataclass(frozen=True)
class FoldJob:
    """What a train-fold task needs, all of it plain values."""

    config: dict[str, Any]
    allow_dirty: bool
    fold: int
    data_version: str
    #: The project folder the config's relative data paths start from.
    root: str
    #: Where the task leaves its model and predictions (``fold_outputs``: tensors and JSON).
    out: str


@dataclass
class FoldResult:
    """What one fold produced: final metrics (plain and ``_tta``), its per-epoch history, its outputs file."""

    index: int
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    #: ``fold-N.pt`` (+ .json, .skops) with the model, a few raw rows, valid targets and predictions.
    outputs: str | None = None
    #: True when the epochs were reported live through the hooks (same process as the flow).
    live: bool = False
    seconds: float = 0.0
    #: (step, reason) when an Optuna pruner stopped the fold mid-way (flows/pruning.py): no metrics then.
    pruned: tuple[int, str] | None = None


@dataclass
class Prepared:
    """A config resolved, its data loaded and its folds made (and guarded)."""

    plan: Plan
    registry: Registry
    dataset: Dataset
    folds: list[Fold]


#: Per process: plans by config, datasets by data config, folds by data + split config (sweeps share the last
#: two). A run resolves its config once; a process-pool or Dask worker once per process. ``forget`` empties
#: them when a flow run ends, so a long-lived ``scribbles serve`` holds nothing between runs.
_PLANS: dict[str, tuple[Plan, Registry]] = {}
_DATASETS: dict[str, Dataset] = {}
_FOLDS: dict[str, list[Fold]] = {}
#: Per process: epoch callbacks of the runs this process drives, by the job's ``out`` folder.
_LIVE: dict[str, Callable[[int, int, dict[str, float]], None]] = {}


def _key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


@contextlib.contextmanager
def project_root(root: str) -> Iterator[None]:
    """Work in ``root`` (relative data paths resolve there); a no-op when already there."""
    here = os.getcwd()
    if Path(root).resolve() == Path(here).resolve():
        yield
        return
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(here)


def plan_for(config: dict[str, Any], allow_dirty: bool) -> tuple[Plan, Registry]:
    """``config`` resolved against its registry (``allow_dirty`` lets the data differ from DVC's record), once
    per process until ``forget``."""
    key = _key(config, allow_dirty, os.getcwd())
    if key not in _PLANS:
        parsed = parse_config(config)
        registry = registry_for(parsed)
        if allow_dirty:
            parsed = allow_dirty_data(parsed, registry)
        _PLANS[key] = resolve(parsed, registry), registry
    return _PLANS[key]


def remember(config: dict[str, Any], allow_dirty: bool, plan: Plan, registry: Registry) -> None:
    """Keep a plan the caller resolved from ``config`` (the CLI's check before Prefect starts) for ``plan_for``."""
    _PLANS[_key(config, allow_dirty, os.getcwd())] = plan, registry


def data_key(plan: Plan) -> str:
    """What identifies a loaded dataset in this process: the data config and the folder it is read from."""
    return _key(plan.resolved["data"], os.getcwd())


def folds_key(plan: Plan) -> str:
    """What identifies a fold list in this process: the dataset and the split config."""
    return _key(data_key(plan), plan.resolved["split"])


def dataset_for(plan: Plan) -> Dataset:
    """The plan's dataset, loaded once per process."""
    key = data_key(plan)
    if key not in _DATASETS:
        dataset = plan.data.load()
        check_target(dataset, plan.config.task, "task" in plan.config.model_fields_set)
        check_steps(plan.preprocess, dataset)
        _DATASETS[key] = dataset
    return _DATASETS[key]


def folds_for(plan: Plan) -> list[Fold]:
    """The plan's folds, made once per process, each passed through the leakage guard."""
    key = folds_key(plan)
    if key not in _FOLDS:
        _FOLDS[key] = guarded_folds(plan.splitter, dataset_for(plan))
    return _FOLDS[key]


def is_loaded(plan: Plan) -> bool:
    """True when this process already holds the plan's dataset."""
    return data_key(plan) in _DATASETS


def has_folds(plan: Plan) -> bool:
    """True when this process already holds the plan's folds."""
    return folds_key(plan) in _FOLDS


def prepare(config: dict[str, Any], allow_dirty: bool) -> Prepared:
    """``config`` resolved, with this process's dataset and folds for it (loaded and made when missing)."""
    plan, registry = plan_for(config, allow_dirty)
    return Prepared(plan, registry, dataset_for(plan), folds_for(plan))


def forget() -> None:
    """Drop this process's memoised plans, datasets and folds (the end of a flow run)."""
    _PLANS.clear()
    _DATASETS.clear()
    _FOLDS.clear()


@contextlib.contextmanager
def live_epochs(out: str, callback: Callable[[int, int, dict[str, float]], None]) -> Iterator[None]:
    """Route the epochs of jobs writing to ``out`` to ``callback`` while they run in this process."""
    _LIVE[out] = callback
    try:
        yield
    finally:
        _LIVE.pop(out, None)


def live_callback(out: str) -> Callable[[int, int, dict[str, float]], None] | None:
    """The epoch callback of the run whose jobs write to ``out`` (``live_epochs``), or None."""
    return _LIVE.get(out)


def run_job(job: FoldJob) -> FoldResult:
    """Train on the fold's train rows, then evaluate its valid rows with and without TTA."""
    start = time.perf_counter()
    with project_root(job.root):
        ready = prepare(job.config, job.allow_dirty)
    if ready.dataset.version != job.data_version:
        raise BadInput(f"data {ready.dataset.source} is at version {ready.dataset.version} here, the run reads "
                       f"{job.data_version}; give every machine the same data (dvc pull / dvc checkout)")
    plan, dataset = ready.plan, ready.dataset
    fold = next(f for f in ready.folds if f.index == job.fold)
    # Preprocessing fitted on the training rows only: the valid rows must not leak into its statistics.
    task = plan.config.task
    inputs = fold_inputs(plan.preprocess, dataset, fold.train, fold.valid, task)
    train, valid, spec = inputs.train, inputs.valid, inputs.spec
    live = _LIVE.get(job.out)

    def on_epoch(epoch: int, metrics: Any) -> None:
        if live is not None:
            live(fold.index, epoch, dict(metrics))

    try:
        result = plan.strategy.fit(
            model_builder(plan.model, spec, train[0], plan.config.train),
            plan.loss.build(spec),
            torch.utils.data.TensorDataset(*train),
            torch.utils.data.TensorDataset(*valid),
            plan.config.train,
            [on_epoch],
        )
    except Pruned as stop:  # a normal end of the task (no failed task run): the flow ends the trial
        return FoldResult(fold.index, {}, live=live is not None, seconds=time.perf_counter() - start,
                          pruned=(stop.step, stop.reason))
    trained = inputs.in_target_units(result.model)  # a regression model predicts in the target's units
    y_train, y_valid = targets(dataset, fold.train, task), targets(dataset, fold.valid, task)
    tta = plan.config.evaluate.tta
    probs = evaluate_groups(
        trained,
        valid[0],
        tta_groups(plan.tta),
        plan.merge,
        (tta.chunk if tta else None) or plan.config.train.batch_size * 4,
        beta=tta.beta if tta else 0.25,
        mode=tta.mode if tta else "auto",
        class_dim=None if task == "regression" else -1,  # a regression's predictions are not softmaxed
    )
    metrics = tta_metrics(plan.metrics, y_valid, probs, result.model, valid[0])
    metrics.update(baseline_metrics(plan.metrics, task, y_train, y_valid, spec.n_classes))
    if dataset.group and dataset.group in dataset.frame.columns:  # per-group results and the worst group
        table, worst = by_group(plan.metrics, y_valid, probs.plain, dataset.frame[dataset.group].to_numpy()[fold.valid])
        write_groups(table, group_folder(job.out, fold.index))
        metrics.update(worst)
    # The logged model takes raw feature columns as the data file holds them: flat rows in feature order,
    # or (after a one-hot step) a DataFrame of the raw columns.
    module = isinstance(result.model, torch.nn.Module)
    serving = inputs.serving() if module else None
    example = dataset.frame.iloc[fold.valid[:5]][dataset.features]
    if serving is not None and "pipeline" not in serving:
        example = example.to_numpy(dtype=np.float32)
    y_pred = probs.plain[:, 0] if task == "regression" else probs.plain.argmax(1)
    outputs = write_outputs(Path(job.out) / f"fold-{fold.index}", result.model, serving, example, y_valid, y_pred,
                            inputs.fitted if serving is not None and "pipeline" in serving else None)
    history = [{k: float(v) for k, v in epoch.items()} for epoch in result.history]
    stopping = plan.config.train.early_stopping
    if stopping is not None and history:  # the epoch it stopped at and its best (core/training/_early_stopping.py)
        metrics.update(early_stopping.record(history, stopping, plan.config.train.epochs))
    return FoldResult(fold.index, metrics, history, str(outputs), live is not None, time.perf_counter() - start)


def group_folder(out: str, index: int) -> Path:
    """Where fold ``index`` of a job writing to ``out`` leaves its ``group_metrics.csv``."""
    return Path(out) / f"groups-{index}"
