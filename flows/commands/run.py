"""`scribbles run CONFIG`: run the experiment flow and print the results table."""

from __future__ import annotations

import argparse
import contextlib
import gc
from pathlib import Path
from typing import Any

from scribbles.core.run_store import STORE_RUN_ID

from .common import EXIT_OK, console


def parsed_config(args: argparse.Namespace) -> Any:
    """The config of ``args.config`` with ``--set``: its YAML and fields checked, no technique loaded yet."""
    from scribbles.core import load_config

    return load_config(args.config, args.set or [])


def checked_config(args: argparse.Namespace, config: Any = None) -> Any:
    """The config of ``args.config`` (with ``--set`` and ``--allow-dirty``; ``config`` when the caller
    parsed it already, see ``parsed_config``), checked before any work.

    Every config error (every sweep trial's too), data that differ from what DVC records, and every
    data or fold error: bad input is reported in seconds, before Prefect starts.
    """
    from scribbles.core import registry_for, resolve

    from ..data_guard import allow_dirty_data, verify_data
    from ..preflight import preflight

    config = parsed_config(args) if config is None else config
    registry = registry_for(config)
    if args.allow_dirty:
        config = allow_dirty_data(config, registry)
    plan = resolve(config, registry)
    if config.sweep is not None:
        from scribbles.core.sweep import representatives

        for _, trial in representatives(config):  # every trial's techniques too: a sweep over model.name, say
            resolve(trial, registry)
    if config.sweep is not None:
        check_sweep(config, plan)
    verify_data(plan)
    preflight(plan)
    from ..fold_task import remember

    # The plan resolved for these checks is the run's: the flow (in this process) does not resolve it again.
    remember(config.model_dump(mode="json"), args.allow_dirty, plan, registry)
    return config


def check_sweep(config: Any, plan: Any) -> None:
    """A sweep's ``rank_by`` and an Optuna study storage it names, checked before Prefect starts (exit 2)."""
    from ..sweep_run import rank_metric

    rank_metric(plan, config.sweep)
    optuna = config.sweep.optuna
    if optuna is None:
        return
    import os

    from ..study_storage import STUDY_ENV, check_storage

    if optuna.storage:
        check_storage(optuna.storage, "sweep.optuna.storage")
    elif os.environ.get(STUDY_ENV):
        check_storage(os.environ[STUDY_ENV], STUDY_ENV)


def warm_up(config: dict[str, Any], allow_dirty: bool, trained_beside: bool = False) -> None:
    """What the run needs first, done while the temporary Prefect server starts (``orchestrated``'s
    ``prepare``): the flow's modules (Prefect's among them), and each technique's ``prepare()`` (the MLflow
    tracker imports MLflow and makes its store ready; the single strategy imports what torch's optimizers
    load on first use). Seconds that otherwise came after the server's start, or in the first fold, with
    garbage collection on (bench/overhead.py). With ``trained_beside`` (a fold worker trains the folds)
    the strategy's ``prepare`` is left to the worker.
    """
    # Prefect's engines: it imports them at the first flow and task call.
    import prefect.flow_engine
    import prefect.task_engine  # noqa: F401

    from .. import experiment  # noqa: F401  (imported here to overlap the server's start)
    from ..fold_task import plan_for
    from ..plots import prepare_plots

    plan, _ = plan_for(config, allow_dirty)  # the plan checked_config resolved and remembered
    for technique in plan.techniques():
        if trained_beside and technique is plan.strategy:
            continue
        with contextlib.suppress(Exception):  # best effort: what fails here fails again where it is needed
            technique.prepare()
    prepare_plots()  # the fold timeline's imports (about 0.4 s, on the flow's thread at the run's start)
    # The imports are done: what they built lives as long as the process. Frozen, it is left out of the
    # garbage collector's full passes, which went over it again and again as it grew (seconds of CPU).
    gc.freeze()
    gc.enable()


def in_process(config: dict[str, Any], allow_dirty: bool) -> bool:
    """Whether the checked config's strategy trains in the calling process (not one that launches workers)."""
    from scribbles.core.training import LaunchedStrategy

    from ..fold_task import plan_for

    return not isinstance(plan_for(config, allow_dirty)[0].strategy, LaunchedStrategy)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the experiment flow and print the results table.

    The temporary Prefect server (when no ``PREFECT_API_URL`` is set) starts as soon as the config's
    YAML and fields parse: its start (seconds of imports in a process of its own) runs beside the
    techniques' imports, the data checks and preflight, and the MLflow store's preparation
    (``warm_up``) instead of before them. A config that does not parse never starts it; bad input
    found after that stops it (exit 2, nothing left: its output was a temporary file).
    """
    from ..fold_worker import beside
    from ..prefect_server import orchestrated, started_early

    config = parsed_config(args)
    gc.disable()  # until warm_up ends: the imports make objects that live on, few cycles
    try:
        with started_early() as server, \
                beside(config, args.allow_dirty, getattr(args, "process_ends", False),
                       server.process.pid if server is not None else None) as worker:
            config = checked_config(args, config)
            out = console()
            out.print(f"[bold]scribbles[/] running [cyan]{config.experiment}[/] from {args.config}")
            from ..lifecycle import observing
            from ..progress import ConsoleProgress

            data = config.model_dump(mode="json")
            if worker is not None:
                worker.prepare(data, args.allow_dirty, str(Path.cwd()), in_process(data, args.allow_dirty))
            trained_beside = worker is not None and worker.active
            with orchestrated(prepare=lambda: warm_up(data, args.allow_dirty, trained_beside), started=server), \
                    observing(ConsoleProgress()):
                from ..experiment import experiment

                result = experiment(data, allow_dirty=args.allow_dirty, force=args.force)
    finally:
        gc.enable()
        if not getattr(args, "process_ends", False):  # as the caller had it (a test running commands in-process)
            # Not when the process ends with the command: unfrozen, the next full collection went over
            # every object torch, Prefect and MLflow hold (0.5 s while the results were printed).
            gc.unfreeze()
    print_results(out, result)
    return EXIT_OK


def _versus_best(trial: dict[str, Any], rank: int) -> str:
    """``best``, ``= (p 0.41)``, ``worse (p 0.003)`` or ``?`` (not paired: other folds)."""
    if rank == 1:
        return "best"
    mark = trial.get("not_worse")
    if mark is None:
        return "?"
    p = trial.get("p_vs_best")
    return f"{'=' if mark else 'worse'} (p {p:.2g})" if p is not None else ("=" if mark else "worse")


def print_sweep(out: Any, result: dict[str, Any]) -> None:
    """The trials ranked by the sweep's metric: rank, assignment, mean ± std (plain, and the TTA score when
    a trial has TTA transforms; without TTA no TTA column), run id."""
    from rich.table import Table

    name = result["rank_by"]
    table = Table(title=f"{result['experiment']}: {len(result['trials'])} trials ranked by {name}")
    paths = list(result["trials"][0]["assignment"]) if result["trials"] else []
    tta = any(trial.get("transforms") for trial in result["trials"])
    for header in ("rank", *paths, name, *([f"{name} (TTA)"] if tta else []), "vs best", "run"):
        table.add_column(header, no_wrap=True)
    for rank, trial in enumerate(result["trials"], 1):
        summary = trial["summary"]
        if "failed" in trial:  # ranked last by the flow; its reason is printed below the table
            scores = ["failed", *(["-"] if tta else []), "-"]
        elif f"{name}_mean" not in summary:  # pruned before its first fold finished
            scores = ["pruned", *(["-"] if tta else []), "-"]
        else:
            scores = [f"{summary[f'{name}_mean']:.4f} ± {summary[f'{name}_std']:.4f}"]
            if tta:  # a trial without transforms (the space varies them) has no TTA score
                scores.append(f"{summary[f'{name}_tta_mean']:.4f} ± {summary[f'{name}_tta_std']:.4f}"
                              if trial.get("transforms") and f"{name}_tta_mean" in summary else "-")
            scores.append(_versus_best(trial, rank) + (" (pruned)" if trial.get("pruned") else ""))
        table.add_row(str(rank), *(str(trial["assignment"][p]) for p in paths), *scores,
                      trial.get("links", {}).get(STORE_RUN_ID, "")[:8])
    out.print(table)
    out.print("vs best: = not significantly worse than the best trial (corrected paired t-test on the same "
              "folds, one-sided, alpha 0.05, p two-sided shown); worse: significantly worse; ?: folds differ")
    for trial in result["trials"]:
        if "failed" in trial:
            out.print(f"trial {trial['trial']} failed: {trial['failed']}", markup=False)
        elif trial.get("pruned"):
            done = len(trial.get("folds", []))
            out.print(f"trial {trial['trial']} pruned at step {trial['pruned']['step']} after {done} fold(s): "
                      f"{trial['pruned']['reason']}", markup=False)
    if result.get("study"):
        study, trained = result["study"], len(result["trials"])
        if study.get("repeats"):
            out.print(f"{study['repeats']} draw(s) repeated an earlier trial's parameters and were not trained "
                      "again", markup=False)
        if trained < study.get("trials", trained):
            why = f"sweep.space holds {trained} points and each was tried" if study.get("points") == trained else \
                "the sampler drew only points already tried"
            out.print(f"{trained} of {study['trials']} trials trained: {why}", markup=False)
        out.print(f"optuna study {result['study']['name']} in {result['study']['storage']}", markup=False)
    cached = sum(r["mode"] == "cached" for t in result["trials"] for r in t.get("reuse", []))
    if cached:
        out.print(f"{cached} trial folds reused from earlier identical runs")
    links = result.get("links", {})
    if STORE_RUN_ID in links:
        out.print(f"MLflow sweep run {links[STORE_RUN_ID]} in {links.get('mlflow_tracking_uri', '')}")


def print_results(out: Any, result: dict[str, Any]) -> None:
    """The per-fold table (plain, and with TTA the TTA score and gain) with mean ± std and the baseline, each
    transform alone, the worst group, and the MLflow run.

    The gain is how much TTA improves on plain on each fold (positive: better); its spread is the standard
    deviation of those per-fold differences, tighter than the two columns' spreads because folds vary together.
    """
    import math
    from statistics import fmean

    from rich.table import Table
    from scribbles.core import metric_names as naming
    from scribbles.core.evaluation import gain

    if result.get("sweep"):
        print_sweep(out, result)
        return
    metrics = result["metrics"]
    folds = result["folds"]
    labels = result.get("transforms", [])
    better = result.get("greater_is_better", {})
    out.print(f"[bold]{result['experiment']}[/]  (data {result['data_version'][:12]})")
    # One table per metric keeps each within an 80-column terminal; TTA columns only when there is TTA.
    for name in metrics:
        up = better.get(name, True)
        table = Table()
        headers = ("fold", name, f"{name} (TTA)", "TTA gain") if labels else ("fold", name)
        for header in headers:
            table.add_column(header, justify="right", no_wrap=True)
        for fold in folds:
            cells = [f"{fold[name]:.4f}"]
            if labels:
                cells += [f"{fold[naming.tta(name)]:.4f}", f"{_gain(fold, name, 'tta', up):+.4f}"]
            table.add_row(str(fold["fold"]), *cells)
        spreads = [_spread([f[name] for f in folds])]
        if labels:
            spreads += [_spread([f[naming.tta(name)] for f in folds]),
                        _spread([_gain(f, name, "tta", up) for f in folds], signed=True)]
        table.add_row("mean ± std", *spreads, style="bold")
        baseline = [f[naming.baseline(name)] for f in folds if naming.baseline(name) in f]
        if len(baseline) == len(folds):
            table.add_row("baseline", _spread(baseline), *(["", ""] if labels else []), style="dim")
        out.print(table)
        undefined = [str(f["fold"]) for f in folds if math.isnan(f[name])]
        if undefined:
            out.print(f"[yellow]note:[/] {name} is undefined (nan) on fold{'s' if len(undefined) > 1 else ''} "
                      f"{', '.join(undefined)}: it cannot be computed from those valid rows (one class only, say), so "
                      "the mean is nan too; a stratified splitter keeps every class in every fold")
        score = fmean(f[name] for f in folds)
        if len(baseline) == len(folds) and gain(up, fmean(baseline), score) <= 0:
            out.print(f"[yellow]warning:[/] {name} {score:.4f} does not beat the baseline "
                      f"{fmean(baseline):.4f} (a model that ignores the features: {_describe(result)})")
        if labels:
            gains = [_gain(f, name, "tta", up) for f in folds]
            out.print(f"TTA gain on {name}: {_spread(gains, signed=True)} over {len(folds)} folds"
                      f"{'' if up else ' (lower is better: the gain is plain minus TTA)'}")
        for label in labels if len(labels) > 1 else []:
            key = f"tta_{label}"
            out.print(
                f"  {label} alone: {_spread([f[f'{name}_{key}'] for f in folds])} "
                f"(gain {_spread([_gain(f, name, key, up) for f in folds], signed=True)})"
            )
        worst = [f[naming.worst_group(name)] for f in folds if naming.worst_group(name) in f]
        if worst and len(worst) == len(folds):  # the fold's worst group (see group_metrics.csv per fold run)
            out.print(f"worst group's {name}: {_spread(worst)} over {len(folds)} folds")
    for note in result.get("reuse", []):
        what = {"cached": "reused", "resumed": "kept"}.get(note["mode"], "trained")
        out.print(f"fold {note['fold']} {what}: {note['reason']}")
    links = result.get("links", {})
    if STORE_RUN_ID in links:
        out.print(
            f"MLflow parent run {links[STORE_RUN_ID]} in {links.get('mlflow_tracking_uri', '')}\n"
            + _ui_hint(links.get("mlflow_tracking_uri", ""))
        )


def _ui_hint(uri: str) -> str:
    """Where to see the run: a tracking server serves its own UI; a local store is opened with `scribbles ui`."""
    if uri.startswith(("http://", "https://")):
        from scribbles.core.redact import mask_text

        return f"Open the MLflow UI at {mask_text(uri)} in a browser"
    return f"Open the MLflow UI with [bold]{_ui_command()}[/], then browse to http://127.0.0.1:5000"


def _ui_command() -> str:
    """``scribbles ui`` as this user types it: through the project's venv when scribbles is not on PATH
    (after `make demo`)."""
    import shutil
    from pathlib import Path

    local = Path(".venv/bin/scribbles")
    return "scribbles ui" if shutil.which("scribbles") or not local.exists() else f"{local} ui"


def _describe(result: dict[str, Any]) -> str:
    from scribbles.core.evaluation import DESCRIPTION

    return DESCRIPTION.get(result.get("task", "classification"), "")


def _gain(fold: dict[str, float], name: str, key: str, greater_is_better: bool = True) -> float:
    """How much ``{name}_{key}`` improves on plain ``{name}`` on one fold (positive: better)."""
    from scribbles.core.evaluation import gain

    return gain(greater_is_better, fold[name], fold[f"{name}_{key}"])


def _spread(values: list[float], signed: bool = False) -> str:
    """``mean ± std`` (population std, as the parent run's ``_std`` metrics)."""
    import numpy as np

    mean, std = float(np.mean(values)), float(np.std(values))
    return f"{mean:+.4f} ± {std:.4f}" if signed else f"{mean:.4f} ± {std:.4f}"


def add_parser(verbs: Any) -> None:
    """Register `scribbles run`."""
    run = verbs.add_parser("run", help="run the experiment flow; print the results table")
    run.add_argument("config", help="experiment config (YAML)")
    run.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                     help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    run.add_argument("--allow-dirty", action="store_true",
                     help="run on data that differ from what DVC records (the run is tagged scribbles.allow_dirty)")
    run.add_argument("--force", action="store_true",
                     help="train every fold, even those an earlier identical run could give (no caching)")
    run.set_defaults(func=cmd_run)
