"""Secrets never reach a tracker: config keys that look secret, and passwords inside URLs, become ``***``."""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
#: A key whose last part contains one of these words holds a secret (``api_key``, ``hf_token``, ...).
SECRET_WORDS = ("token", "password", "secret", "key")
#: ``scheme://user:password@host``: the password part of a URL's user info.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/:@\s]*:)[^/@\s]+(?=@)", re.IGNORECASE)


def is_secret(key: str) -> bool:
    """True when the last part of a dotted key names a secret (case-insensitive)."""
    leaf = key.rsplit(".", 1)[-1].lower()
    return any(word in leaf for word in SECRET_WORDS)


def mask_value(value: Any) -> Any:
    """``value`` with any password inside a URL replaced by ``***``; other values unchanged."""
    if isinstance(value, str) and "://" in value:
        return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, value)
    return value


def mask_params(params: dict[str, str]) -> dict[str, str]:
    """Flattened params with secret keys and URL passwords masked."""
    return {key: MASK if is_secret(key) and value else mask_value(value) for key, value in params.items()}


def mask_tree(tree: Any, key: str = "") -> Any:
    """A nested config with secret keys and URL passwords masked (the input is not changed)."""
    if isinstance(tree, dict):
        return {k: mask_tree(v, f"{key}.{k}" if key else str(k)) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [mask_tree(v, key) for v in tree]
    if is_secret(key) and tree not in (None, ""):
        return MASK
    return mask_value(tree)


def masked_fields(tree: Any, key: str = "") -> list[str]:
    """Dotted keys of ``tree`` whose value is the mask (what a rerun cannot know)."""
    if isinstance(tree, dict):
        return [f for k, v in tree.items() for f in masked_fields(v, f"{key}.{k}" if key else str(k))]
    if isinstance(tree, list):
        return [f for i, v in enumerate(tree) for f in masked_fields(v, f"{key}.{i}")]
    return [key] if isinstance(tree, str) and MASK in tree else []
