"""`scribbles plugins`: every technique with family, name, provider and summary."""

from __future__ import annotations

import argparse
import json
from typing import Any

from scribbles.core import BadInput

from .common import EXIT_OK, console


def cmd_plugins(args: argparse.Namespace) -> int:
    """List every technique: family, name, provider, summary."""
    from scribbles.core import FAMILIES, default_registry

    if args.family and args.family not in FAMILIES:
        raise BadInput(f"--family: unknown family '{args.family}'; families: {', '.join(FAMILIES)}")
    registry = default_registry()
    infos = registry.techniques(args.family)
    if args.json:
        rows = [
            {"family": i.family, "name": i.name, "provider": i.provider, "summary": i.cls.summary()}
            for i in infos
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    from rich.table import Table

    table = Table("family", "name", "provider", "summary")
    for info in infos:
        table.add_row(info.family, info.name, info.provider, info.cls.summary())
    console().print(table)
    return EXIT_OK


def add_parser(verbs: Any) -> None:
    """Register `scribbles plugins`."""
    plugins = verbs.add_parser("plugins", help="every technique: family, name, provider, summary")
    plugins.add_argument("--family", help="only this family")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(func=cmd_plugins)
