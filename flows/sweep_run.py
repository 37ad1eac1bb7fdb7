"""What every sweep kind shares: the metric it ranks by, its sweep run's context, and its result.

Grid and random sweeps (``experiment.run_sweep``) and Optuna sweeps (``search.run_search``) differ in how
they choose trials, not in what their sweep run records or what they return.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import yaml
from scribbles.core import Dataset, Plan, RunContext
from scribbles.core.config import ExperimentConfig, SweepConfig
from scribbles.core.errors import ConfigError
from scribbles.core.plan import flatten

from .fold_cache import CODE_KEY, code_version
from .lineage import git_commit, plugin_versions
from .redact import mask_params, mask_tree


def rank_metric(plan: Plan, sweep: SweepConfig) -> tuple[str, bool]:
    """The metric a sweep ranks its trials by (``sweep.rank_by``, default the first metric) and whether
    greater is better; ConfigError naming ``sweep.rank_by`` when it is not one of the plan's metrics."""
    names = [m.name for m in plan.metrics]
    rank_by = sweep.rank_by or names[0]
    if rank_by not in names:
        raise ConfigError(f"{rank_by!r} is not one of the metrics ({', '.join(names)})", "sweep.rank_by")
    return rank_by, next(bool(m.greater_is_better) for m in plan.metrics if m.name == rank_by)


def sweep_context(parsed: ExperimentConfig, plan: Plan, dataset: Dataset, folder: Path, run_name: str,
                  record: dict[str, str], tags: dict[str, str] | None) -> RunContext:
    """The sweep run: its masked config (``sweep_config.yaml`` in ``folder``), the sweep section as params,
    and its record (``record``: the sweep's kind and trials; lineage added here; ``tags`` last)."""
    config = mask_tree(parsed.model_dump(mode="json"))
    config_path = folder / "sweep_config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return RunContext(
        experiment=plan.experiment, config=config, params=mask_params(flatten({"sweep": config["sweep"]})),
        tags={
            **record,
            "data_version": dataset.version,
            "git_commit": git_commit(),
            CODE_KEY: code_version(),
            "plugins": plugin_versions(),
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
            **(tags or {}),
        },
        data_version=dataset.version, data_source=dataset.source, data_rev=dataset.rev, n_folds=0,
        run_name=run_name, artifacts={"config": config_path}, kind="sweep",
    )


def sweep_result(plan: Plan, sweep: RunContext, rank_by: str, ranked: list[dict[str, Any]],
                 **extra: Any) -> dict[str, Any]:
    """What a sweep returns: its links, data version, metrics, the metric it ranks by and the trials ranked."""
    return {
        "experiment": plan.experiment,
        "sweep": True,
        "links": dict(sweep.links),
        "data_version": sweep.data_version,
        "metrics": [m.name for m in plan.metrics],
        "rank_by": rank_by,
        "trials": ranked,
        **extra,
    }
