"""Prefect keeps a flow's parameters in its database: the flows get a masked config and a reference.

``stash`` writes the real config to a file only this user can read (mode 0600 in a 0700 folder) and
returns the masked config carrying the file's path under ``REF_KEY``; the flow body calls ``unstash``
to read the real one back. A config without secrets is passed as it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scribbles.core import BadInput
from scribbles.core.redact import mask_tree

REF_KEY = "scribbles_config_ref"


def stash(config: dict[str, Any]) -> dict[str, Any]:
    """The masked ``config`` with a reference to the real one (``config`` itself when it hides nothing)."""
    masked = mask_tree(config)
    if masked == config:
        return config
    folder = Path(tempfile.mkdtemp(prefix="scribbles-config-"))  # mode 0700
    path = folder / "config.json"
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "w") as out:
        json.dump(config, out)
    return {**masked, REF_KEY: str(path)}


def unstash(config: dict[str, Any]) -> dict[str, Any]:
    """The real config a flow was given a reference to (``config`` itself when it carries none)."""
    if REF_KEY not in config:
        return config
    path = Path(str(config[REF_KEY]))
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise BadInput(f"{REF_KEY}: the config this run refers to ({path}) is gone; start the run again") from None


def drop(config: dict[str, Any]) -> None:
    """Remove the file (and folder) a stashed config refers to."""
    if REF_KEY in config:
        shutil.rmtree(Path(str(config[REF_KEY])).parent, ignore_errors=True)


@contextlib.contextmanager
def stashed(config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``stash`` for the length of the block."""
    safe = stash(config)
    try:
        yield safe
    finally:
        drop(safe)
