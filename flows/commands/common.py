"""What every verb shares: exit codes and the console."""

from __future__ import annotations

from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def console() -> Any:
    """A rich console on stdout (imported lazily: `scribbles --help` stays fast)."""
    from rich.console import Console

    return Console()
