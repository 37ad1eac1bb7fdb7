"""`scribbles run CONFIG`: run the experiment flow and print the results table."""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_OK, console


def cmd_run(args: argparse.Namespace) -> int:
    """Run the experiment flow and print the results table."""
    from scribbles.core import default_registry, load_config, resolve

    from ..data_guard import allow_dirty_data, verify_data

    config = load_config(args.config, args.set or [])
    registry = default_registry()
    if config.plugins.deny:
        from scribbles.core import load_registry

        registry = load_registry(deny=config.plugins.deny)
    if args.allow_dirty:
        config = allow_dirty_data(config, registry)
    # Every config error, and data that differ from what DVC records, before Prefect starts or any work.
    verify_data(resolve(config, registry))
    out = console()
    out.print(f"[bold]scribbles[/] running [cyan]{config.experiment}[/] from {args.config}")
    from ..experiment import experiment, observing
    from ..progress import ConsoleProgress

    with observing(ConsoleProgress()):
        result = experiment(config.model_dump(mode="json"), allow_dirty=args.allow_dirty)
    print_results(out, result)
    return EXIT_OK


def print_results(out: Any, result: dict[str, Any]) -> None:
    """The per-fold table with mean and std, plus where to find the run in MLflow."""
    from rich.table import Table

    metrics = result["metrics"]
    table = Table(title=f"{result['experiment']}  (data {result['data_version'][:12]})")
    table.add_column("fold", justify="right")
    for name in metrics:
        table.add_column(name, justify="right")
        table.add_column(f"{name} (TTA)", justify="right")
    for fold in result["folds"]:
        cells = [f"{fold[n]:.4f}" for name in metrics for n in (name, f"{name}_tta")]
        table.add_row(str(fold["fold"]), *cells)
    summary = result["summary"]
    cells = [
        f"{summary[f'{n}_mean']:.4f} ± {summary[f'{n}_std']:.4f}"
        for name in metrics
        for n in (name, f"{name}_tta")
    ]
    table.add_row("mean ± std", *cells, style="bold")
    out.print(table)
    for name in metrics:
        gain = summary[f"{name}_tta_mean"] - summary[f"{name}_mean"]
        out.print(f"TTA gain on {name}: {gain:+.4f}")
    links = result.get("links", {})
    if "mlflow_run_id" in links:
        out.print(
            f"MLflow parent run {links['mlflow_run_id']} in {links.get('mlflow_tracking_uri', '')}\n"
            f"Open the MLflow UI with [bold]scribbles ui[/] (or `.venv/bin/scribbles ui`), "
            f"then browse to http://127.0.0.1:5000"
        )


def add_parser(verbs: Any) -> None:
    """Register `scribbles run`."""
    run = verbs.add_parser("run", help="run the experiment flow; print the results table")
    run.add_argument("config", help="experiment config (YAML)")
    run.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                     help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    run.add_argument("--allow-dirty", action="store_true",
                     help="run on data that differ from what DVC records (the run is tagged scribbles.allow_dirty)")
    run.set_defaults(func=cmd_run)
