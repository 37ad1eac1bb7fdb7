"""A logging thread: tracker calls run in order, off the training thread, and are waited for at the end."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class LogWorker:
    """Runs submitted calls one after another on a daemon thread.

    A failing call is recorded and the next ones still run (the final status must still be written);
    ``drain`` waits for every call submitted so far and can re-raise the first failure.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []
        #: Seconds the thread spent running calls, in all and per function name (for bench/tracking.py);
        #: ``cpu_s`` is the thread's CPU time in them (busy minus cpu: waiting for the store or the GIL).
        self.busy_s = 0.0
        self.cpu_s = 0.0
        self.timings: dict[str, float] = {}

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; the thread starts on the first call."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()
        self._queue.put((fn, args))

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                fn, args = item
                start, cpu = time.perf_counter(), time.thread_time()
                try:
                    fn(*args)
                except Exception as exc:  # recorded and re-raised by drain(); later calls still run
                    # Debug, not warning: drain() raises the first failure, which the command reports once;
                    # a full disk would otherwise print one warning per queued call.
                    log.debug("%s: %s failed: %s", self.name, getattr(fn, "__name__", fn), exc)
                    self.errors.append(exc)
                finally:
                    spent = time.perf_counter() - start
                    self.busy_s += spent
                    self.cpu_s += time.thread_time() - cpu
                    name = getattr(fn, "__name__", str(fn))
                    self.timings[name] = self.timings.get(name, 0.0) + spent
            finally:
                self._queue.task_done()

    def drain(self, timeout: float | None = None, raise_errors: bool = True) -> bool:
        """Wait until every submitted call ran; False when ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        if raise_errors and self.errors:
            error, self.errors = self.errors[0], []
            raise error
        return True

    def close(self) -> None:
        """Stop the thread once the queue is empty."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5)
        self._thread = None
