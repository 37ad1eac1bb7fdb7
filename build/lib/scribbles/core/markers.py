"""The pluggy markers of the ``scribbles`` project."""

from __future__ import annotations

import pluggy

PROJECT = "scribbles"
#: The hook API version that this release implements; plugins may declare the one they need.
HOOK_API_VERSION = 1

#: The technique families, in the order listings show them (contracts.py has a base class for each).
FAMILIES: tuple[str, ...] = (
    "data", "splitter", "preprocess", "model", "loss", "strategy", "tta", "metric", "tracker",
)

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
