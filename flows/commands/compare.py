"""`scribbles compare [--experiment NAME]`: parent runs side by side in the terminal.

`scribbles compare RUN_A RUN_B [--metric M] [--rope R]`: paired fold statistics of two runs scored on
the same folds (see ``scribbles.flows.paired``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from scribbles.core import BadInput

from .common import EXIT_OK, add_store_option, console, count


def _cell(value: float | None, spread: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if spread is None else f"{value:.4f} ± {spread:.4f}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def cmd_paired(args: argparse.Namespace) -> int:
    """Paired statistics of RUN_A against RUN_B on their shared folds."""
    from ..paired import paired
    from ..records import find_run
    from ..stores import open_store

    if args.experiment is not None:
        raise BadInput("--experiment lists recent runs; with RUN_A RUN_B leave it out")
    if not args.rope >= 0:
        raise BadInput(f"--rope: {args.rope} must be zero or more (the region of practical equivalence)")
    store = open_store(args.tracking_uri, args.run_ids)
    run_a, run_b = (find_run(store, run_id) for run_id in args.run_ids)
    if run_a.run_id == run_b.run_id:
        raise BadInput(f"RUN_A RUN_B: both name run {run_a.run_id} (a fold run means its parent); give two "
                       "different runs")
    results = paired(store, run_a, run_b, args.metric or None, args.rope)
    names = {"a": run_a.run_id, "b": run_b.run_id}
    if args.json:
        print(json.dumps({**names, "folds": results[0].n, "results": [r.as_dict() for r in results]}, indent=2))
        return EXIT_OK
    from rich.table import Table

    label_a = f"A {run_a.run_id[:8]} {run_a.name}".strip()
    label_b = f"B {run_b.run_id[:8]} {run_b.name}".strip()
    # One column per metric (usually one to three): it fits a terminal, as MLflow's compare view.
    table = Table(title=f"{label_a}\nvs {label_b}\n{results[0].n} paired folds, rope {args.rope:g}")
    table.add_column("")
    for r in results:
        table.add_column(r.metric + ("" if r.greater_is_better else "\n(lower is better)"), justify="right")
    rows = [
        ("A mean", [f"{r.mean_a:.4f}" for r in results]),
        ("B mean", [f"{r.mean_b:.4f}" for r in results]),
        ("A - B", [f"{r.mean_diff:+.4f}" for r in results]),
        ("95% interval", [f"[{r.low:+.4f}, {r.high:+.4f}]" for r in results]),
        ("corrected t", [f"{r.t:.3f}" for r in results]),
        ("p, corrected", [_p(r.p) for r in results]),
        ("p, naive t-test", [_p(r.naive_p) for r in results]),
        ("p, Wilcoxon", [_p(r.wilcoxon_p) for r in results]),
        ("P(A better)", [f"{r.p_better:.3f}" for r in results]),
        ("P(equivalent)", [f"{r.p_equivalent:.3f}" for r in results]),
        ("P(A worse)", [f"{r.p_worse:.3f}" for r in results]),
    ]
    for label, cells in rows:
        table.add_row(label, *cells, end_section=label in ("A - B", "p, Wilcoxon"))
    out = console()
    out.print(table)
    for r in results:
        better = (r.mean_diff > 0) == r.greater_is_better
        verdict = (f"{'A' if better else 'B'} is significantly better (corrected p {_p(r.p)} < 0.05)"
                   if r.p < 0.05 else f"no significant difference (corrected p {_p(r.p)})")
        out.print(f"{r.metric}: {verdict}")
    out.print("p, corrected: Nadeau-Bengio corrected resampled t-test, two-sided; p, naive: the uncorrected "
              "paired t-test, overconfident on CV folds; P(...): Bayesian correlated t-test (Benavoli et al. 2017)")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    """Print the recent parent runs of an experiment: differing params, metric mean ± std, TTA gain."""
    from ..records import compare, parent_runs
    from ..stores import open_store

    if args.run_ids:
        if len(args.run_ids) != 2:
            raise BadInput(f"RUN_A RUN_B: give two run ids to compare them fold by fold, not {len(args.run_ids)}")
        return cmd_paired(args)
    if args.metric or args.rope:
        raise BadInput("--metric and --rope need two runs: scribbles compare RUN_A RUN_B --metric M")
    store = open_store(args.tracking_uri)
    experiment, runs = parent_runs(store, args.experiment, args.runs)
    table_data = compare(runs)
    if args.json:
        print(json.dumps({"experiment": experiment, **table_data}, indent=2))
        return EXIT_OK
    from rich.table import Table

    # Transposed, as MLflow's own compare view: one column per run, so it fits a terminal.
    rows = table_data["runs"]
    table = Table(title=f"{experiment}: {'the most recent run' if len(runs) == 1 else f'{len(runs)} most recent runs'} "
                        f"({store.shown})")
    table.add_column("")
    for row in rows:
        table.add_column(f"{row['run_id'][:8]}\n{row['run_name'] or ''}", justify="right")
    lineage = [
        ("status", [row["status"] for row in rows]),
        ("data", [row["data_version"][:8] + (" dirty" if row["allow_dirty"] else "") for row in rows]),
        ("commit", [row["git_commit"][:8] + ("+dirty" if row["git_commit"].endswith("+dirty") else "")
                    for row in rows]),
        # Equal here: the same folds, so `scribbles compare RUN_A RUN_B` can pair them.
        ("folds", [row["split_fingerprint"][:8] or "-" for row in rows]),
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
        has_baseline = any(e.get("baseline") is not None for e in entries)
        table.add_row(name, *(_cell(e["mean"], e["std"]) for e in entries),
                      end_section=not table_data["tta"] and not has_baseline)
        if has_baseline:
            table.add_row(f"{name} baseline", *(_cell(e.get("baseline")) for e in entries), style="dim",
                          end_section=not table_data["tta"])
        if not table_data["tta"]:
            continue
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
    compare = verbs.add_parser(
        "compare", help="runs side by side (params that differ, metric mean and std); with RUN_A RUN_B, "
        "paired fold statistics")
    compare.add_argument("run_ids", nargs="*", metavar="RUN", help="RUN_A RUN_B: two runs on the same folds")
    compare.add_argument("--metric", action="append", help="metric to test (repeatable; default every one)")
    compare.add_argument("--rope", type=float, default=0.0,
                         help="region of practical equivalence: |A - B| below it counts as equal (default 0)")
    compare.add_argument("--experiment", help="MLflow experiment name (default: that of the latest run)")
    compare.add_argument("--runs", type=count(1), default=5, help="how many of the most recent runs (default 5)")
    compare.add_argument("--json", action="store_true", help="machine-readable output")
    add_store_option(compare)
    compare.set_defaults(func=cmd_compare)
