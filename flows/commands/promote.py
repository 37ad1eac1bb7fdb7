"""`scribbles promote RUN_ID --alias A [--alpha 0.05] [--metric M] [--force]`: the model registry, with evidence."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import EXIT_OK, add_store_option, console


def cmd_promote(args: argparse.Namespace) -> int:
    """Register the run's fold ensemble under its experiment's name with the alias, when it is better."""
    from ..promote import promote

    done = promote(args.run_id, args.alias, alpha=args.alpha, force=args.force, metric=args.metric,
                   tracking_uri=args.tracking_uri)
    if args.json:
        print(json.dumps(done.__dict__, indent=2, default=str))
        return EXIT_OK
    out = console()
    out.print(f"registered [cyan]{done.model}[/] version {done.version} (fold ensemble of run {done.run_id}) "
              f"as @{done.alias}" + (" [yellow](forced)[/]" if done.forced else ""))
    evidence = done.evidence
    if evidence.get("p_one_sided") is not None:
        out.print(f"against version {evidence['holder_version']} on {evidence['metric']}: "
                  f"{evidence['mean_diff']:+.4f} (95% interval [{evidence['low']:+.4f}, {evidence['high']:+.4f}]), "
                  f"one-sided corrected p {evidence['p_one_sided']:.3g} over {evidence['n']} folds")
    elif evidence.get("note"):
        out.print(evidence["note"])
    out.print(f"load it with mlflow.pytorch.load_model('models:/{done.model}@{done.alias}')")
    return EXIT_OK


def add_parser(verbs: Any) -> None:
    """Register `scribbles promote`."""
    promote = verbs.add_parser(
        "promote", help="register a run's fold ensemble in MLflow's model registry when significantly better")
    promote.add_argument("run_id", metavar="RUN_ID", help="the parent run to promote")
    promote.add_argument("--alias", required=True, help="registry alias to give it, e.g. champion")
    promote.add_argument("--alpha", type=float, default=0.05,
                         help="significance level of the one-sided corrected t-test (default 0.05)")
    promote.add_argument("--metric", help="metric that decides (default the run's first metric)")
    promote.add_argument("--force", action="store_true",
                         help="register even when not significantly better (recorded on the version)")
    promote.add_argument("--json", action="store_true", help="machine-readable output")
    add_store_option(promote)
    promote.set_defaults(func=cmd_promote)
