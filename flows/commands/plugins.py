"""`scribbles plugins [--family F] [--json]` lists every technique; `scribbles plugins check` checks them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from scribbles.core import BadInput

from .common import EXIT_OK, console


def registry_for_args(args: argparse.Namespace) -> Any:
    """The registry this command should show: default discovery, less a config's denied distributions."""
    from scribbles.core import default_registry, load_config, load_registry

    deny = load_config(args.config).plugins.deny if args.config else []
    if not deny:
        return default_registry()  # prints its own warnings
    registry = load_registry(deny=deny)
    for line in registry.problems:
        print(f"warning: {line}", file=sys.stderr)
    return registry


def cmd_plugins(args: argparse.Namespace) -> int:
    """List every technique (family, name, provider, summary), or check them with `check`."""
    from scribbles.core import FAMILIES

    if args.family and args.family not in FAMILIES:
        raise BadInput(f"--family: unknown family '{args.family}'; families: {', '.join(FAMILIES)}")
    if args.action == "check":
        from .plugins_check import check_plugins

        return check_plugins(args)
    registry = registry_for_args(args)
    infos = registry.techniques(args.family)
    if args.json:
        rows = [
            {"family": i.family, "name": i.name, "provider": i.provider, "summary": i.summary()}
            for i in infos
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    from rich.markup import escape
    from rich.table import Table

    table = Table("family", "name", "provider")
    table.add_column("summary", max_width=SUMMARY_WIDTH)  # wrapped: a pipe or a file gets no 800-column rows
    for info in infos:  # escaped: "[channels, height, width]" in a summary is text, not rich markup
        table.add_row(info.family, info.name, escape(info.provider), escape(info.summary()))
    console().print(table)
    return EXIT_OK


#: Characters of a summary per line in the table (``--json`` gives it whole).
SUMMARY_WIDTH = 80


def add_parser(verbs: Any) -> None:
    """Register `scribbles plugins` and `scribbles plugins check`."""
    plugins = verbs.add_parser(
        "plugins", help="every technique: family, name, provider, summary; `check` checks them all",
        description="List every technique, or `check` hook specs, signatures and a dry run of each one "
        "on tiny synthetic data (exit 1 with the list of problems).",
    )
    plugins.add_argument("action", nargs="?", choices=["list", "check"], default="list",
                         help="list (default) or check")
    plugins.add_argument("--family", help="only this family")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.add_argument("--config", help="apply this experiment config's `plugins: {deny: [...]}`")
    plugins.set_defaults(func=cmd_plugins)
