"""Lazy re-exports (PEP 562) for the core sub-packages: a name is imported from its private module on first
use, so ``from scribbles.core.training import TorchStrategy`` imports torch while listing plugins does not."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str],
                 namespaces: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps a name to the private module (``"_loop"``)
    that defines it, ``namespaces`` a name to a private module exported whole. An unknown name raises
    ``AttributeError``, as for any module."""

    def __getattr__(name: str) -> Any:
        if name in namespaces:
            value = importlib.import_module(f"{package}.{namespaces[name]}")
        elif name in exports:
            value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        vars(sys.modules[package])[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports, *namespaces})

    return __getattr__, __dir__
