"""`scribbles compare [--experiment NAME]`: parent runs side by side in the terminal."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import EXIT_OK, console


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

    table = Table(title=f"{experiment}: {len(runs)} most recent runs ({mlflow.tracking_uri})")
    for column in ("run", "status", "data", "commit"):
        table.add_column(column)
    for key in table_data["differing_params"]:
        table.add_column(key)
    for name in table_data["metrics"]:
        table.add_column(name, justify="right")
        table.add_column(f"{name} (TTA)", justify="right")
        table.add_column("TTA gain", justify="right")
    for row in table_data["runs"]:
        cells: list[Any] = [
            f"{row['run_id'][:8]} {row['run_name'] or ''}".strip()
            + (f"\nrerun of {row['rerun_of'][:8]}" if row["rerun_of"] else ""),
            row["status"],
            row["data_version"][:8] + (" dirty" if row["allow_dirty"] else ""),
            row["git_commit"][:8] + ("+dirty" if row["git_commit"].endswith("+dirty") else ""),
            *(str(row["params"][k]) for k in table_data["differing_params"]),
        ]
        for name in table_data["metrics"]:
            entry = row["metrics"][name]
            gain = entry["tta_gain"]
            cells += [_cell(entry["mean"], entry["std"]), _cell(entry["tta_mean"], entry["tta_std"]),
                      "-" if gain is None else f"{gain:+.4f}"]
        table.add_row(*cells)
    out = console()
    out.print(table)
    if not table_data["differing_params"]:
        out.print("every run has the same params")
    return EXIT_OK


def add_parser(verbs: Any) -> None:
    """Register `scribbles compare`."""
    compare = verbs.add_parser("compare", help="runs side by side: params that differ, metric mean and std")
    compare.add_argument("--experiment", help="MLflow experiment name (default: that of the latest run)")
    compare.add_argument("--runs", type=int, default=10, help="how many of the most recent runs (default 10)")
    compare.add_argument("--json", action="store_true", help="machine-readable output")
    compare.set_defaults(func=cmd_compare)
