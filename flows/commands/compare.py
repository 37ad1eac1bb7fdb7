"""`scribbles compare [--experiment NAME]`: parent runs side by side in the terminal."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import EXIT_OK, console, count


def _cell(value: float | None, spread: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if spread is None else f"{value:.4f} ± {spread:.4f}"


def cmd_compare(args: argparse.Namespace) -> int:
    """Print the recent parent runs of an experiment: differing params, metric mean ± std, TTA gain."""
    from ..records import client, compare, parent_runs

    mlflow = client()
    experiment, runs = parent_runs(mlflow, args.experiment, args.runs)
    table_data = compare(runs)
    if args.json:
        print(json.dumps({"experiment": experiment, **table_data}, indent=2))
        return EXIT_OK
    from rich.table import Table

    # Transposed, as MLflow's own compare view: one column per run, so it fits a terminal.
    rows = table_data["runs"]
    table = Table(title=f"{experiment}: {len(runs)} most recent runs ({mlflow.tracking_uri})")
    table.add_column("")
    for row in rows:
        table.add_column(f"{row['run_id'][:8]}\n{row['run_name'] or ''}", justify="right")
    lineage = [
        ("status", [row["status"] for row in rows]),
        ("data", [row["data_version"][:8] + (" dirty" if row["allow_dirty"] else "") for row in rows]),
        ("commit", [row["git_commit"][:8] + ("+dirty" if row["git_commit"].endswith("+dirty") else "")
                    for row in rows]),
    ]
    if any(row["rerun_of"] for row in rows):
        lineage.append(("rerun of", [(row["rerun_of"] or "")[:8] for row in rows]))
    for i, (label, cells) in enumerate(lineage):
        table.add_row(label, *cells, end_section=i == len(lineage) - 1)
    for key in table_data["differing_params"]:
        table.add_row(key, *(str(row["params"][key]) for row in rows), style="cyan",
                      end_section=key == table_data["differing_params"][-1])
    for name in table_data["metrics"]:
        entries = [row["metrics"][name] for row in rows]
        table.add_row(name, *(_cell(e["mean"], e["std"]) for e in entries))
        table.add_row(f"{name} (TTA)", *(_cell(e["tta_mean"], e["tta_std"]) for e in entries))
        table.add_row("TTA gain", *("-" if e["tta_gain"] is None else f"{e['tta_gain']:+.4f}" for e in entries),
                      end_section=True)
    out = console()
    out.print(table)
    if not table_data["differing_params"]:
        out.print("every run has the same params")
    return EXIT_OK


def add_parser(verbs: Any) -> None:
    """Register `scribbles compare`."""
    compare = verbs.add_parser("compare", help="runs side by side: params that differ, metric mean and std")
    compare.add_argument("--experiment", help="MLflow experiment name (default: that of the latest run)")
    compare.add_argument("--runs", type=count(1), default=5, help="how many of the most recent runs (default 5)")
    compare.add_argument("--json", action="store_true", help="machine-readable output")
    compare.set_defaults(func=cmd_compare)
