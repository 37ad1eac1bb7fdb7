"""Lineage facts recorded with every run: git commit, plugin distributions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from scribbles.core.registry import distributions


def git_commit(cwd: Path | None = None) -> str:
    """The commit checked out in ``cwd`` ('+dirty' when tracked files changed), or 'unknown'."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def plugin_versions() -> str:
    """JSON of the distributions that provide plugins, name -> version."""
    return json.dumps(distributions(), sort_keys=True)
