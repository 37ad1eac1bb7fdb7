"""One lifecycle for every run kind: an experiment's parent run, a sweep, an Optuna search, a diagnosis.

``run_lifecycle`` starts the run through the ``scribbles_run_start`` hook, turns SIGTERM into
``Terminated`` while the block runs, and ends the run exactly once: ``scribbles_run_end`` when the block
calls ``Ending.end``, else ``scribbles_run_error`` with KILLED (Ctrl-C, SIGTERM) or FAILED (any other
error), with Ctrl-C and SIGTERM ignored while the trackers write the final status. A stop or an error
during the start hook ends the run too (``scribbles_run_error`` then reaches the trackers that had started
nothing; they do nothing). So no run kind can leave a run RUNNING, and each gets the caller's observers (a
progress display) and the same signal handling.
"""

from __future__ import annotations

import contextlib
import signal
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from scribbles.core import Registry, RunContext, RunEndContext, RunErrorContext, Tracker
from scribbles.core.run_store import FINISHED, STORE_RUN_ID

from .interrupts import causes, ended_early_as, interruption, raise_terminated

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
def _on_signals(handler: Any, signums: tuple[signal.Signals, ...]) -> Iterator[None]:
    """``handler`` for ``signums`` in the block (main thread only; elsewhere signals are left alone)."""
    previous: dict[signal.Signals, Any] = {}
    try:
        for signum in signums:
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def sigterm_as_interrupt() -> contextlib.AbstractContextManager[None]:
    """Turn SIGTERM into ``Terminated`` (in the main thread) so that open runs end KILLED."""
    return _on_signals(raise_terminated, (signal.SIGTERM,))


def stops_ignored() -> contextlib.AbstractContextManager[None]:
    """Ignore Ctrl-C and SIGTERM (in the main thread) while open runs are being ended: a second stop must
    not cut the final statuses short (the trackers bound that time: ``ERROR_DRAIN_S`` for MLflow's)."""
    return _on_signals(signal.SIG_IGN, (signal.SIGINT, signal.SIGTERM))


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


def _stores(plugins: list[Any]) -> Iterator[Any]:
    """The run stores of the trackers among ``plugins`` (those that keep one)."""
    for plugin in plugins:
        store = plugin.store() if isinstance(plugin, Tracker) else None
        if store is not None:
            yield store


def _note_store(run: RunContext, plugins: list[Any]) -> None:
    """Note where the run was written (``flows.stores``): ``resume``, ``rerun`` and ``promote`` read it there."""
    from .stores import remember

    run_id = run.links.get(STORE_RUN_ID, "")
    if run_id and (store := next(_stores(plugins), None)) is not None:
        remember(run_id, store.uri)


def _finished(run: RunContext, plugins: list[Any]) -> bool:
    """Whether the run's store already holds it FINISHED: a stop can land after a tracker wrote that status
    and before its end hook returned (``Ending.ended`` still false), and the stop line then named a run that
    `scribbles resume` refuses. The store is the record; a store that cannot be read says no."""
    run_id = run.links.get(STORE_RUN_ID)
    if not run_id:
        return False
    with stops_ignored():  # a second Ctrl-C must not cut this read short
        try:
            stores = list(_stores(plugins))
        except Exception:  # a tracker that cannot name its store: the run is ended as stopped, as before
            return False
        for store in stores:
            try:
                stored = store.get(run_id)
            except Exception:  # an unreadable store: the run is ended as stopped, as before
                continue
            if stored is not None:
                return stored.status == FINISHED
    return False


def release_frames(exc: BaseException) -> None:
    """Let go of the locals of the frames a stop cut short (``traceback.clear_frames``), ``exc``'s causes too.

    A Ctrl-C inside an MLflow write on a SQLite store, WAL mode or not (``create_run``'s autoflush, by a
    plugin that holds no stops, say) leaves SQLAlchemy's cursor alive in the traceback's frames, and with it
    SQLite's write lock: every later write waited 20 s (MLflow's busy timeout) and failed with "database is
    locked", so the statuses that end the runs were never written. Frames still running are left as they are.
    """
    for cause in causes(exc):
        traceback.clear_frames(cause.__traceback__)


def resumable(run: RunContext) -> bool:
    """Whether `scribbles resume` finishes ``run``: a parent run or an Optuna sweep does; a grid or random
    sweep does not (its trial runs are resumed one by one, ``resume.check_stopped``), so a stopped one is
    not named in the stop line (its stopped trial is, when one had started)."""
    return run.kind != "sweep" or run.tags.get("sweep") == "optuna"


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
        try:
            with sigterm_as_interrupt():
                # Inside the try: a stop or an error in a start hook (after a tracker created its run, say)
                # still ends what was started. The trackers hold stops over their own atomic writes
                # (``scribbles.core.stops_deferred``), so a stop lands before or after them, never inside.
                with registered(registry, everyone) if not hold else contextlib.nullcontext():
                    registry.hook.scribbles_run_start(ctx=run)
                _note_store(run, plugins)
                yield ending
                if not ending.ended:
                    raise RuntimeError(f"run {run.run_name or run.experiment!r} was not ended")
        except BaseException as exc:
            stopped = interruption(exc) is not None
            if ending.ended or (stopped and _finished(run, plugins)):
                raise  # a stop after the run ended FINISHED: nothing to end, and nothing for `resume` to finish
            status = "KILLED" if stopped else "FAILED"
            if status == "KILLED":
                release_frames(exc)
            # A tracker links a run once it can be resumed (its config recorded): only then is it named.
            if run.links.get(STORE_RUN_ID) and resumable(run):
                ended_early_as(run.links[STORE_RUN_ID])
            with stops_ignored(), registered(registry, everyone) if not hold else contextlib.nullcontext():
                registry.hook.scribbles_run_error(ctx=RunErrorContext(run, exc, status))
            raise
