"""`scribbles store migrate --to URI [--from URI]`: a laptop's MLflow store onto the team's server."""

from __future__ import annotations

import argparse
from typing import Any

from scribbles.core import BadInput

from .common import EXIT_OK


def cmd_store(args: argparse.Namespace) -> int:
    """Copy every experiment and run of the project's store (or --from) into the store at --to."""
    from scribbles.core.redact import mask_text

    from ..stores import default_store, same_place

    source = default_store(args.source)
    if same_place(source.uri, args.to):  # a relative path to the same file copied every run into itself
        raise BadInput(f"--to: {mask_text(args.to)} is the store being migrated; give the team's server, e.g. "
                       "--to http://mlflow.team.lan:5000")
    source.check(must_exist=True, field="--from")
    target = default_store(args.to)
    target.check(field="--to")
    print(f"copying {source.shown} -> {target.shown}")
    done = source.copy_to(target.uri, progress=print if args.verbose else lambda line: None)
    print(f"migrated {done.runs} run(s) of {done.experiments} experiment(s): {done.params} params, {done.metrics} "
          f"metric values, {done.artifacts} artifact files"
          + (f"; {done.skipped} run(s) already there, skipped" if done.skipped else ""))
    print("each copy is tagged scribbles.migrated_from = its source run id; point MLFLOW_TRACKING_URI "
          "(or scribbles.toml mlflow.tracking_uri) at the server to use it")
    return EXIT_OK


def add_parser(verbs: Any) -> None:
    """Register `scribbles store`."""
    store = verbs.add_parser("store", help="move a laptop's MLflow store to the team's server")
    actions = store.add_subparsers(dest="action", required=True, metavar="ACTION")
    move = actions.add_parser("migrate", help="copy experiments, runs, metrics, tags and artifacts to --to")
    move.add_argument("--to", required=True, metavar="URI", help="target tracking URI, e.g. http://host:5000")
    move.add_argument("--from", dest="source", metavar="URI",
                      help="source tracking URI (default: this project's store, MLFLOW_TRACKING_URI or ./mlflow.db)")
    move.add_argument("--verbose", action="store_true", help="print each run as it is copied")
    move.set_defaults(func=cmd_store)
