"""`scribbles diagnose CONFIG`: bias-variance diagnosis from learning curves on the configured split."""

from __future__ import annotations

import argparse
from typing import Any

from scribbles.core import BadInput
from scribbles.core.run_store import STORE_RUN_ID

from .common import EXIT_OK, console


def parse_fractions(text: str) -> list[float]:
    """``"0.1,0.2,1"`` -> ``[0.1, 0.2, 1.0]``; a BadInput naming the option otherwise."""
    problem = BadInput(f"--fractions {text!r}: use comma-separated numbers in (0, 1], e.g. 0.1,0.2,0.5,1")
    try:
        fractions = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise problem from None
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise problem
    return fractions


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Run the learning curves, print them with the verdict and where the plot is."""
    from scribbles.core import load_config, registry_for, resolve

    fractions = parse_fractions(args.fractions) if args.fractions else None
    config = load_config(args.config, args.set or [])
    registry = registry_for(config)
    plan = resolve(config, registry)  # every config error before Prefect starts or any work is done
    if args.folds is not None and args.folds < 1:
        raise BadInput("--folds must be at least 1")
    from ..preflight import preflight

    preflight(plan)  # the stores, the data and the folds, as `scribbles run` checks them: in seconds
    from ..config_ref import stashed
    from ..learning_curve import diagnose  # Prefect's import: after the checks

    out = console()
    out.print(f"[bold]scribbles[/] diagnosing [cyan]{config.experiment}[/] from {args.config}")
    with stashed(config.model_dump(mode="json")) as safe:  # Prefect keeps flow parameters: no secrets
        result = diagnose(safe, fractions, args.folds)
    print_diagnosis(out, result)
    return EXIT_OK


def print_diagnosis(out: Any, result: dict[str, Any]) -> None:
    """The curve as a table, then the verdict and the advice."""
    from rich.table import Table

    table = Table(title=f"learning curve: {result['experiment']}")
    for column in ("fraction", "train rows", "train error", "valid error", "gap"):
        table.add_column(column, justify="right")
    for p in result["points"]:
        table.add_row(f"{p['fraction']:.2f}", f"{p['rows']:.0f}", f"{p['train_error']:.4f}",
                      f"{p['valid_error']:.4f}", f"{p['valid_error'] - p['train_error']:+.4f}")
    out.print(table)
    out.print(f"verdict: [bold]{result['verdict']}[/]: {result['advice']}")
    if "baseline_error" in result:
        end = result["points"][-1]["valid_error"]
        beaten = "below" if end < result["baseline_error"] else "[yellow]not below[/]"
        out.print(f"baseline valid error {result['baseline_error']:.4f} (a model that ignores the features); "
                  f"the curve ends {beaten} it at {end:.4f}")
    links = result.get("links", {})
    if STORE_RUN_ID in links:
        out.print(f"MLflow run {links[STORE_RUN_ID]} holds the plot (learning_curve.png)")


def add_parser(verbs: Any) -> None:
    """Register `scribbles diagnose`."""
    diagnose = verbs.add_parser("diagnose", help="bias-variance diagnosis from learning curves")
    diagnose.add_argument("config", help="experiment config (YAML)")
    diagnose.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                          help="override a config value, e.g. --set model.hidden=[8] (repeatable)")
    diagnose.add_argument("--fractions", metavar="F1,F2,...",
                          help="training fractions in (0, 1]; default 0.1,0.2,0.4,0.7,1")
    diagnose.add_argument("--folds", type=int, metavar="N", help="use only the first N folds (default: all)")
    diagnose.set_defaults(func=cmd_diagnose)
