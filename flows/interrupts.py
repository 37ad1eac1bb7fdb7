"""Stops from outside: SIGTERM (a scheduler, `docker stop`) handled like Ctrl-C, with its own exit code.

Kept free of Prefect and MLflow imports: the command line installs the handler before anything else.
"""

from __future__ import annotations

import signal
from typing import Any

#: Exit codes of a command stopped by Ctrl-C and by SIGTERM, as a shell reports them (128 + signal).
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM


#: The run id a command says to resume: the outermost run that ended FAILED or KILLED (runs end inner
#: first, so the outermost is noted last). Here, not in ``lifecycle``: the command line reads it and
#: must not import the kernel to do so (``scribbles plugins`` imports no numpy).
_ended_early: str | None = None


def ended_early_as(run_id: str) -> None:
    """Note that run ``run_id`` ended FAILED or KILLED (``lifecycle.run_lifecycle``)."""
    global _ended_early
    _ended_early = run_id


def ended_early(clear: bool = False) -> str | None:
    """The id of the outermost run the command ended FAILED or KILLED; None when none did."""
    global _ended_early
    found = _ended_early
    if clear:
        _ended_early = None
    return found


class Terminated(KeyboardInterrupt):
    """SIGTERM, what a scheduler sends to cancel; handled like Ctrl-C (open runs end KILLED)."""


def raise_terminated(signum: int, frame: Any) -> None:
    """A SIGTERM handler: raise ``Terminated`` in the main thread."""
    raise Terminated("stopped by SIGTERM")


def interruption(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM behind ``exc``: itself, or one in its chain of causes. A stop that lands while a
    C extension initialises surfaces as that import's error (scipy: "ImportError: initialization failed",
    caused by the KeyboardInterrupt), and Prefect re-raises a task's error in the flow: it is still a stop."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def exit_code(exc: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
