"""`scribbles plugins check`: load every plugin, then dry-run every technique on tiny synthetic data.

Exit 0 when everything is clean, 1 with the list of problems otherwise. Problems found while loading
(a plugin that fails to import, a misspelt hook, a hook signature that does not fit its spec, a
plugin API version mismatch, a malformed technique class) come first; each technique's dry run
(``scribbles.testing.technique_problems``) follows.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from .common import EXIT_FAILED, EXIT_OK


def check_plugins(args: argparse.Namespace) -> int:
    """Run every check; print one line per technique and the list of problems."""
    from scribbles.core import load_config, load_registry
    from scribbles.core.registry import API_VERSION_ATTRIBUTE, BUILTIN_PROVIDER, declared_api_version
    from scribbles.testing import technique_problems

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # its database setup logs at INFO
    deny = load_config(args.config).plugins.deny if args.config else []
    # Never strict here: every broken plugin is a finding to list, not a reason to stop listing.
    registry = load_registry(deny=deny, strict=False)
    registry.import_all()
    problems = list(registry.problems)
    notes = []
    for _, plugin in registry.list_name_plugin():
        provider = registry.provider_of(plugin)
        if provider != BUILTIN_PROVIDER and declared_api_version(plugin) is None:
            notes.append(f"plugin {provider} declares no {API_VERSION_ATTRIBUTE}; add "
                         f"`{API_VERSION_ATTRIBUTE} = 1` to the module its entry point names")
    rows: list[dict[str, Any]] = []
    for info in registry.techniques(args.family):
        started = time.perf_counter()
        found = technique_problems(info.cls, registry=registry)
        seconds = time.perf_counter() - started
        label = f"{info.family} '{info.name}' ({info.provider})"
        problems += [f"{label}: {p}" for p in found]
        rows.append({"family": info.family, "name": info.name, "provider": info.provider,
                     "ok": not found, "problems": found, "seconds": round(seconds, 2)})
        if not args.json:
            print(f"{'ok  ' if not found else 'FAIL'}  {info.family:<9} {info.name:<24} {info.provider}"
                  f"  ({seconds:.1f}s)", flush=True)
    if args.json:
        print(json.dumps({"ok": not problems, "problems": problems, "notes": notes, "techniques": rows},
                         indent=2))
        return EXIT_FAILED if problems else EXIT_OK
    for note in notes:
        print(f"note: {note}")
    if problems:
        print(f"{len(problems)} problem{'s' if len(problems) > 1 else ''}:")
        for line in problems:
            print(f"  - {line}")
        return EXIT_FAILED
    print(f"all {len(rows)} techniques pass: hooks match their specs and every dry run succeeded")
    return EXIT_OK
