"""The experiment flow: one run (flows/runs.py), or a sweep of them under one sweep run.

A ``sweep:`` section runs every trial (grid or random here, Optuna in flows/search.py) as a nested run of
the sweep run; ``resume`` finishes a stopped parent run, or continues a stopped Optuna sweep, in place;
``promote`` registers a finished run that is significantly better than an alias's holder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from scribbles.core.config import ExperimentConfig, parse_config
from scribbles.core.errors import ScribblesError
from scribbles.core.redact import mask_log_handlers, masking_errors
from scribbles.core.run_store import STORE_RUN_ID
from scribbles.core.sweep import label, trials

from . import fold_task
from .config_ref import stashed, unstash
from .failures import as_failure
from .fold_task import plan_for
from .lifecycle import run_lifecycle
from .paired import mark_not_worse
from .prefect_env import configure_prefect
from .runs import TrialFailed, load_data, make_folds, rank, run_one
from .sweep_run import rank_metric, sweep_context, sweep_result

configure_prefect()

from prefect import flow  # noqa: E402  (configure_prefect must run first)

configure_prefect()  # prefect's own logging setup resets logger levels on import


def run_sweep(parsed: ExperimentConfig, allow_dirty: bool, tags: dict[str, str] | None,
              force: bool, resume: str | None = None) -> dict[str, Any]:
    """Every trial of the sweep, each a nested run with its folds under one sweep run; trials ranked.

    An Optuna sweep (``sweep.optuna``) runs in flows/search.py; ``resume`` continues a stopped one.
    """
    assert parsed.sweep is not None
    if parsed.sweep.optuna is not None:
        from .search import run_search

        return run_search(parsed, allow_dirty, tags, force, resume)
    trial_list = trials(parsed)  # every trial validated before any work
    configs = [(assignment, trial.model_dump(mode="json")) for assignment, trial in trial_list]
    first, registry = plan_for(configs[0][1], allow_dirty)
    rank_by, greater = rank_metric(first, parsed.sweep)
    load_data(configs[0][1], allow_dirty)
    make_folds(configs[0][1], allow_dirty)
    dataset = fold_task.dataset_for(first)
    with tempfile.TemporaryDirectory(prefix="scribbles-sweep-") as tmp:
        kind = "grid" if parsed.sweep.grid is not None else "random"
        sweep = sweep_context(parsed, first, dataset, Path(tmp), f"sweep of {len(configs)} trials",
                              {"sweep": kind, "trials": str(len(configs))}, tags)
        results: list[dict[str, Any]] = []
        with run_lifecycle(registry, sweep, first.trackers, hold=False) as ending:
            for number, (assignment, trial) in enumerate(configs):
                try:
                    result = run_one(trial, allow_dirty, tags, force, parent=sweep,
                                     run_name=f"trial {number}: {label(assignment)}", plots=Path(tmp))
                except TrialFailed as failed:  # it fails alone: the other trials still run
                    result = {"summary": {}, "links": failed.links, "failed": failed.reason}
                results.append({"trial": number, "assignment": assignment, **result})
            if all("failed" in r for r in results):
                raise ScribblesError(f"every trial of the sweep failed; trial 0: {results[0]['failed']}")
            ranked = mark_not_worse(rank(results, rank_by, greater), rank_by, greater)
            ending.end(ranked[0]["summary"], ranked)
    return sweep_result(first, sweep, rank_by, ranked)


def promote_after(result: dict[str, Any], alias: str) -> dict[str, Any]:
    """Promote a finished run to ``alias`` when the evidence allows; what happened, never an exception
    for a run that is simply not better (a scheduled run goes on either way)."""
    from .promote import NotBetter, promote

    run_id = result.get("links", {}).get(STORE_RUN_ID)
    if not run_id:
        return {"promoted": False, "reason": "no MLflow tracker: nothing to register"}
    try:
        done = promote(run_id, alias)
    except NotBetter as exc:
        print(f"not promoted to @{alias}: {exc}", flush=True)
        return {"promoted": False, "reason": str(exc)}
    print(f"promoted to @{alias}: {done.model} version {done.version}", flush=True)
    return {"promoted": True, "model": done.model, "version": done.version, "evidence": done.evidence}


def experiment(
    config: dict[str, Any], allow_dirty: bool = False, tags: dict[str, str] | None = None,
    force: bool = False, resume: str | None = None, promote: str | None = None,
) -> dict[str, Any]:
    """Run one experiment (or every trial of its sweep) from a config mapping; per-fold metrics and summary.

    ``allow_dirty`` reads data that differ from what DVC records (the run is tagged
    ``scribbles.allow_dirty``); ``tags`` are added to the run's tags (``scribbles.rerun_of``, say);
    ``force`` trains every fold even when an identical earlier fold could be reused; ``resume`` is the
    MLflow run id of a stopped parent run to finish in place; ``promote`` is a registry alias the run
    takes when it is significantly better than the alias's holder (``scribbles serve --promote``). Prefect
    records the flow's parameters: it gets the config with its secrets masked and a reference to the real
    one (``config_ref``).
    """
    with stashed(config) as safe:
        return experiment_flow(safe, allow_dirty, tags, force, resume, promote)


@flow(name="scribbles-experiment", validate_parameters=False)
@masking_errors  # Prefect keeps a failed run's message in its database
def experiment_flow(
    config: dict[str, Any], allow_dirty: bool = False, tags: dict[str, str] | None = None,
    force: bool = False, resume: str | None = None, promote: str | None = None,
) -> dict[str, Any]:
    """The experiment as a Prefect flow; ``config`` may be a masked config with a reference (config_ref)."""
    mask_log_handlers()  # Prefect's handlers (its database's among them) exist by now
    config = unstash(config)
    try:
        parsed = parse_config(config)
        if parsed.sweep is not None:
            return run_sweep(parsed, allow_dirty, tags, force, resume)
        continues = {STORE_RUN_ID: resume} if resume else None
        result = run_one(config, allow_dirty, tags, force, continues)
        if promote:
            result["promotion"] = promote_after(result, promote)
        return result
    except Exception as exc:
        failure = as_failure(exc)  # a full disk or a broken store: one line, not a library's traceback
        if failure is None:
            raise
        raise failure from exc
    finally:
        fold_task.forget()
