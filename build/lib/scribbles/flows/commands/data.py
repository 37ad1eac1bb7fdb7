"""`scribbles data build | status | push | pull`: the demo datasets against data.dvc, and the team remote."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import EXIT_FAILED, EXIT_OK


def cmd_data(args: argparse.Namespace) -> int:
    """Build the demo datasets, or say whether data/ matches data.dvc."""
    from ..data_store import build, describe_status, project_root, status, transfer

    # DVC finds its project upward from here: data build and status act on that project's data/, never on a
    # data/ folder below the working directory.
    root = project_root(Path.cwd())
    if args.action in ("push", "pull"):
        print(transfer(root, args.action))
        return EXIT_OK
    if args.action == "build":
        written = build(root, force=args.force)
        print(f"built {', '.join(written)}" if written else "data/ already built")
        print("data/ is in DVC's cache; `scribbles data status` checks it against data.dvc")
        return EXIT_OK
    changes = status(root)
    if not changes:
        print("data/ matches data.dvc: up to date")
        return EXIT_OK
    print("data/ does not match data.dvc:")
    for line in describe_status(changes):
        print(f"  {line}")
    # --relink --force: plain `dvc checkout` keeps a file whose size and mtime DVC has seen before.
    print("fix: `scribbles data build --force` (demo data), `dvc checkout --relink --force data.dvc` (restore the "
          "tracked version) or `dvc add data` (record the new data)")
    return EXIT_FAILED


def add_parser(verbs: Any) -> None:
    """Register `scribbles data`."""
    data = verbs.add_parser("data", help="demo datasets, whether data/ matches data.dvc, push/pull to the team remote")
    data.add_argument("action", choices=["build", "status", "push", "pull"],
                      help="push/pull: DVC's own push and pull of data.dvc to the default remote "
                           "(scribbles.toml dvc.remote, SCRIBBLES_DVC_REMOTE, or DVC's config)")
    data.add_argument("--force", action="store_true", help="rebuild every dataset, not just missing ones")
    data.set_defaults(func=cmd_data)
