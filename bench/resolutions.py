"""How many times one `scribbles run` parses its config, loads the plugin registry and resolves the plan.

Usage: python bench/resolutions.py CONFIG [--set KEY=VALUE ...]   (run in a project made by `scribbles data build`)
Prints the counts per function; each should be 1 per process that trains (issue 18: a config resolves once).
"""

from __future__ import annotations

import collections
import functools
import sys

import scribbles.core as core
import scribbles.core.config as config_module
import scribbles.core.plan as plan_module
import scribbles.core.registry as registry_module

COUNTS: collections.Counter[str] = collections.Counter()


def _counted(module: object, name: str) -> None:
    original = getattr(module, name)

    @functools.wraps(original)
    def wrapper(*args: object, **kwargs: object) -> object:
        COUNTS[name] += 1
        return original(*args, **kwargs)

    setattr(module, name, wrapper)
    if getattr(core, name, None) is original:
        setattr(core, name, wrapper)


# Patched before the flows import them by name, so every later `from ... import` sees the counter.
_counted(config_module, "parse_config")
_counted(plan_module, "resolve")
_counted(registry_module, "load_registry")

from scribbles.flows.cli import run_cli  # noqa: E402

if __name__ == "__main__":
    try:
        code = run_cli(["run", *sys.argv[1:]])
    finally:
        print("counts in the flow's process:", dict(COUNTS), file=sys.stderr)
    sys.exit(code)
