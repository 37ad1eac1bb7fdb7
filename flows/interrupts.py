"""Stops from outside: SIGTERM (a scheduler, `docker stop`) handled like Ctrl-C, with its own exit code.

Kept free of Prefect and MLflow imports: the command line installs the handler before anything else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
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


#: The stop (Ctrl-C or SIGTERM) the command received, noted by the handlers below inside ``stops_noted``.
_received: KeyboardInterrupt | None = None
_noting = False


def received() -> KeyboardInterrupt | None:
    """The stop the command received (noted inside ``stops_noted``), even one a library caught; else None."""
    return _received


def _raise(stop: KeyboardInterrupt) -> None:
    global _received
    if _noting:
        _received = stop
    raise stop


def raise_terminated(signum: int, frame: Any) -> None:
    """A SIGTERM handler: raise ``Terminated`` in the main thread (noted inside ``stops_noted``)."""
    _raise(Terminated("stopped by SIGTERM"))


def raise_interrupted(signum: int, frame: Any) -> None:
    """A SIGINT handler: Python's own (``KeyboardInterrupt`` in the main thread), noted inside ``stops_noted``."""
    _raise(KeyboardInterrupt())


@contextlib.contextmanager
def stops_noted() -> Iterator[None]:
    """The command's stop handlers for the block: SIGTERM raises ``Terminated`` (exit 143), Ctrl-C raises
    ``KeyboardInterrupt`` as Python's own handler does (a caller's own SIGINT handler is kept), and both
    are noted (``interruption`` falls back on the note); the handlers before, and no note, after. Main
    thread only."""
    previous: dict[int, Any] = {}
    with contextlib.suppress(ValueError):  # not the main thread (an embedding caller's): left alone
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, raise_terminated)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, raise_interrupted)
    global _noting, _received
    _received, _noting = None, True
    hook = sys.unraisablehook
    sys.unraisablehook = _deliver_again(hook)
    try:
        yield
    finally:  # a caller running commands in its own process (the tests) gets its handlers back
        sys.unraisablehook = hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received, _noting = None, False  # this command's stop is not the caller's next error


def _deliver_again(hook: Any) -> Any:
    """An ``unraisablehook`` that gives a stop raised inside a finaliser back to the command.

    Python runs a signal's handler wherever the main thread is, a weakref callback or ``__del__`` included,
    and there the KeyboardInterrupt is only printed ("Exception ignored in ...") and dropped: a trial's
    Ctrl-C during `resume` was lost that way and the run trained on. The same signal is sent again a moment
    later, from a thread, so that it lands in the command's own code; other errors go to ``hook``.
    """
    def deliver_again(unraisable: Any) -> None:
        if not (_noting and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            hook(unraisable)
            return
        signum = signal.SIGTERM if isinstance(unraisable.exc_value, Terminated) else signal.SIGINT
        threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
    return deliver_again


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then the exception it was raised from or while handling, and so on (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def interruption(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM behind ``exc``: itself, or one in its chain of causes, or, when the chain holds
    none, the stop the command received (noted inside ``stops_noted``).

    A stop that lands while a C extension initialises surfaces as that import's error (scipy: "ImportError:
    initialization failed", caused by the KeyboardInterrupt), and Prefect re-raises a task's error in the
    flow. Some libraries do not chain it at all: pydantic's serializer reports a KeyboardInterrupt raised
    inside it as ``PydanticSerializationError`` with the stop only in its text. It is still a stop."""
    return next((cause for cause in causes(exc) if isinstance(cause, KeyboardInterrupt)), _received)


def exit_code(exc: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
