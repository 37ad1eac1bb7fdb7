"""One lifecycle for every run kind: an experiment's parent run, a sweep, an Optuna search, a diagnosis.

``run_lifecycle`` starts the run through the ``scribbles_run_start`` hook, turns SIGTERM into
``Terminated`` while the block runs, and ends the run exactly once: ``scribbles_run_end`` when the block
calls ``Ending.end``, else ``scribbles_run_error`` with KILLED (Ctrl-C, SIGTERM) or FAILED (any other
error), with SIGTERM ignored while the trackers write the final status. So no run kind can leave a run
RUNNING, and each gets the caller's observers (a progress display) and the same signal handling.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from scribbles.core import Registry, RunContext, RunEndContext, RunErrorContext, Tracker

from .interrupts import ended_early_as, interruption, raise_terminated

#: Plugins (a progress display, say) that the caller wants to see this process's runs.
_OBSERVERS: list[Any] = []


@contextlib.contextmanager
def observing(*plugins: Any) -> Iterator[None]:
    """Register ``plugins`` for the lifecycle hooks of every run started inside the block."""
    _OBSERVERS.extend(plugins)
    try:
        yield
    finally:
        for plugin in plugins:
            _OBSERVERS.remove(plugin)


def observers() -> list[Any]:
    """The plugins registered with ``observing`` now."""
    return list(_OBSERVERS)


@contextlib.contextmanager
def _on_sigterm(handler: Any) -> Iterator[None]:
    """``handler`` for SIGTERM in the block (main thread only; elsewhere signals are left alone)."""
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def sigterm_as_interrupt() -> contextlib.AbstractContextManager[None]:
    """Turn SIGTERM into ``Terminated`` (in the main thread) so that open runs end KILLED."""
    return _on_sigterm(raise_terminated)


def sigterm_ignored() -> contextlib.AbstractContextManager[None]:
    """Ignore SIGTERM (in the main thread) while open runs are being ended."""
    return _on_sigterm(signal.SIG_IGN)


@contextlib.contextmanager
def registered(registry: Registry, plugins: list[Any]) -> Iterator[None]:
    """``plugins`` registered with ``registry``'s hooks in the block, unregistered after it."""
    for plugin in plugins:
        registry.register(plugin)
    try:
        yield
    finally:
        for plugin in plugins:
            registry.unregister(plugin)


@dataclass
class Ending:
    """How the block of ``run_lifecycle`` ends its run: ``end(summary)`` once its work is done."""

    registry: Registry
    run: RunContext
    plugins: list[Any]
    #: Register ``plugins`` around the end hook (when they are not registered for the whole block).
    wrap: bool
    ended: bool = False

    def end(self, summary: dict[str, float], trials: list[dict[str, Any]] | None = None) -> None:
        """End the run FINISHED with ``summary`` (a sweep's with its ranked ``trials``)."""
        with registered(self.registry, self.plugins) if self.wrap else contextlib.nullcontext():
            self.registry.hook.scribbles_run_end(ctx=RunEndContext(self.run, summary, list(trials or [])))
        self.ended = True


def _note_store(run: RunContext, plugins: list[Any]) -> None:
    """Note where the run was written (``flows.stores``): ``resume``, ``rerun`` and ``promote`` read it there."""
    from .stores import remember

    run_id = run.links.get("mlflow_run_id", "")
    for plugin in plugins:
        store = plugin.store() if isinstance(plugin, Tracker) else None
        if store is not None and run_id:
            remember(run_id, store.uri)
            return


@contextlib.contextmanager
def run_lifecycle(registry: Registry, run: RunContext, plugins: list[Any], hold: bool = True) -> Iterator[Ending]:
    """Start ``run``, yield its ``Ending``, and end it FAILED or KILLED if the block raises.

    ``plugins`` (the plan's trackers; the observers are added) see the run's hooks: for the whole block
    with ``hold`` (a parent run: its fold hooks are called inside), else only around this run's own start
    and end (a sweep: each trial registers its own trackers, which must not see the trial's hooks twice).
    A block that returns without ``Ending.end`` is a bug: the run ends FAILED and RuntimeError is raised.
    """
    everyone = [*plugins, *_OBSERVERS]
    ending = Ending(registry, run, everyone, wrap=not hold)
    with registered(registry, everyone) if hold else contextlib.nullcontext():
        with registered(registry, everyone) if not hold else contextlib.nullcontext():
            registry.hook.scribbles_run_start(ctx=run)
        _note_store(run, plugins)
        try:
            with sigterm_as_interrupt():
                yield ending
                if not ending.ended:
                    raise RuntimeError(f"run {run.run_name or run.experiment!r} was not ended")
        except BaseException as exc:
            status = "KILLED" if interruption(exc) is not None else "FAILED"
            if run.links.get("mlflow_run_id"):
                ended_early_as(run.links["mlflow_run_id"])
            # A second SIGTERM must not cut the final statuses short.
            with sigterm_ignored(), registered(registry, everyone) if not hold else contextlib.nullcontext():
                registry.hook.scribbles_run_error(ctx=RunErrorContext(run, exc, status))
            raise
