"""Stops from outside: SIGTERM (a scheduler, `docker stop`) handled like Ctrl-C, with its own exit code.

Kept free of Prefect and MLflow imports: the command line installs the handler before anything else.
"""

from __future__ import annotations

import signal
from typing import Any

#: Exit codes of a command stopped by Ctrl-C and by SIGTERM, as a shell reports them (128 + signal).
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, what a scheduler sends to cancel; handled like Ctrl-C (open runs end KILLED)."""


def raise_terminated(signum: int, frame: Any) -> None:
    """A SIGTERM handler: raise ``Terminated`` in the main thread."""
    raise Terminated("stopped by SIGTERM")


def exit_code(exc: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
