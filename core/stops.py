"""Ctrl-C and SIGTERM held back over a critical section: store writes that must not be cut in half.

The standard "defer interrupts over a critical section" pattern: in the block, SIGINT and SIGTERM are only
noted; when the block ends (returns or raises) the handlers it replaced are put back and the first stop
noted is raised again (``signal.raise_signal``), so it takes effect as the process had it: Ctrl-C's
``KeyboardInterrupt``, the command line's ``Terminated``, or an ignored signal's nothing.

A tracker wraps the writes that make a run exist (create it, record its config, remember its id) in
``stops_deferred``: a stop that lands there would leave a run in the store that nothing will end, or an
MLflow SQL session cut mid-flush. Keep such a block short (a few store calls, no waiting on the network
that a stop should be able to cut short): the user's Ctrl-C waits for it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

#: The signals that stop a command: Ctrl-C and a scheduler's SIGTERM.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stops_deferred() -> Iterator[None]:
    """Note SIGINT and SIGTERM in the block; raise the first one again as soon as it ends.

    Main thread only (Python runs signal handlers there); in another thread the block runs as is. A signal
    whose handler was not set from Python is left alone. Blocks nest: an inner block hands its stop to the
    outer one, which raises it when it ends. Any number of stops may arrive in the block; one is raised.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: object) -> None:
        held.append(signum)

    previous: dict[int, signal.Handlers | object] = {}
    try:
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is not None:
                previous[signum] = signal.signal(signum, hold)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        if held:  # runs the handler put back: KeyboardInterrupt, Terminated, nothing (SIG_IGN), or the default
            signal.raise_signal(held[0])
