"""A fold worker: a process of its own that trains a run's folds beside the flow, from the run's first second.

``scribbles run`` spends seconds before its first fold could train in its own process: Prefect's and
MLflow's imports, the MLflow store made ready, the flow's start (bench/overhead.py). A run that trains in
one process (strategy ``single`` or another in-process strategy, one fold at a time, no sweep) starts this
worker as soon as its config parses: it imports torch and the techniques on the machine's other core while
the command checks its input, receives the checked config (``prepare``), loads the data, makes the folds
and trains them in order, fold 0 first, while the flow starts. The flow's ``train-fold`` task then takes
each fold's result from the worker instead of training it (``result``); what the flow decided to reuse
(the fold cache, a resumed run) the worker skips once it is told (``decided``), having at most trained
one fold for nothing.

The same ``fold_task.run_job`` trains a fold here as inline, with the same seeds: the metrics are the same.
Epochs, results and warnings come back as JSON lines on a pipe (no pickle); models and predictions as the
fold's output files (``fold_outputs``, read with ``weights_only``), as from a process pool. The worker is
an optimisation only: when it fails, dies or disagrees with the flow (another data version), it is
stopped and the fold trains inline, where an error is reported as it always is. It runs in a session of
its own (a Ctrl-C reaches the command, which stops it) and ends with the command however that ends.
Set ``SCRIBBLES_FOLD_WORKER=0`` to train every fold in the command's process.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from scribbles.core.errors import ScribblesWarning

from .processes import alive, lower_priority

#: ``0``: every fold trains in the command's own process; ``1``: a worker whenever the run can use one;
#: unset (or anything else): a worker for runs of at least ``MIN_EPOCHS`` epochs in all.
ENV = "SCRIBBLES_FOLD_WORKER"
#: Epochs over all folds (``train.epochs`` x ``split.n_splits``, 5 when not given) from which a worker pays:
#: its start costs a few seconds of CPU (torch's imports), which a short run's training does not repay.
MIN_EPOCHS = 20

#: A worker's folder in the system's temporary folder: this, the command's pid, a dash, a random part.
PREFIX = "scribbles-fold-worker-"

#: The worker of this process's run, while ``beside`` holds it.
_CURRENT: FoldWorker | None = None


def wanted(config: Any) -> bool:
    """Whether a run of the parsed ``config`` trains its folds one by one in one process, which a worker
    can do instead (no sweep, no process pool or Dask, one worker on one machine), long enough to repay
    the worker's start (``MIN_EPOCHS``; ``SCRIBBLES_FOLD_WORKER`` decides when set to 0 or 1)."""
    train, setting = config.train, os.environ.get(ENV, "").strip()
    if setting == "0" or config.sweep is not None or train.parallel_folds > 1 or train.dask_address \
            or train.workers != 1 or train.nodes != 1:
        return False
    folds = config.split.get("n_splits", 5)
    return setting == "1" or train.epochs * (folds if isinstance(folds, int) else 5) >= MIN_EPOCHS


class FoldWorker:
    """The command's side of the worker process: start it, hand it the checked config, take its folds."""

    def __init__(self, config: dict[str, Any], allow_dirty: bool, lower_own_priority: bool = False) -> None:
        """Start the worker with ``config`` as parsed (see ``beside``). ``lower_own_priority``: this process
        ends with the command, and ``prepare`` may lower its CPU priority."""
        self.folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        self.job: dict[str, Any] | None = None
        self.data_version: str | None = None
        self._failed = False
        self.lower_own_priority = lower_own_priority
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._early: dict[int, list[dict[str, Any]]] = {}  # events of folds the flow has not asked for yet
        with open(self.folder / "worker.log", "wb") as log:
            # The command's pid as an argument: the worker has the kernel end it when the command ends.
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(os.getpid())], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, start_new_session=True,
            )
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True, name="fold-worker").start()
        # The config as parsed (not checked yet): the worker resolves it and does what training imports on
        # first use while the command checks; it reads no data and writes nothing before ``prepare``.
        self._send({"warm": {"config": config, "allow_dirty": allow_dirty}})

    def _read(self, stream: IO[bytes] | None) -> None:
        assert stream is not None
        for line in stream:
            with contextlib.suppress(ValueError):
                self._events.put(json.loads(line))
        self._events.put(None)  # the worker is gone

    def _send(self, message: dict[str, Any]) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()
        except (OSError, ValueError):
            self._failed = True

    def prepare(self, config: dict[str, Any], allow_dirty: bool, root: str, in_process: bool) -> None:
        """Hand the worker the checked config: it loads the data and trains fold 0 on. ``in_process``
        False (a strategy that launches processes of its own) stops the worker instead.

        From here the worker's training is what the run waits for; the command's own work (Prefect's and
        MLflow's imports, logging) can wait: when this process ends with the command, its CPU priority
        is lowered (nice 5), so that on a machine with fewer free cores than busy processes the worker
        trains at full speed.
        """
        if not in_process:
            self.close()
            return
        self.job = {"config": config, "allow_dirty": allow_dirty, "root": root, "out": str(self.folder / "out")}
        self._send({"prepare": self.job})
        if not self._failed and self.lower_own_priority:
            with contextlib.suppress(OSError):
                os.nice(5)  # this thread, and the threads it starts from now on (per thread on Linux)

    @property
    def active(self) -> bool:
        """Whether the worker may still train folds: it has not failed, died or been stopped."""
        return not self._failed

    def decided(self, folds: list[int]) -> None:
        """The folds the flow trains (the others are reused): the worker trains only those from now on."""
        self._send({"train": folds})

    def serves(self, job: Any) -> bool:
        """Whether the worker trains ``job``'s fold: the same config, data version and project folder."""
        return (not self._failed and self.job is not None and job.config == self.job["config"]
                and job.allow_dirty == self.job["allow_dirty"] and job.root == self.job["root"]
                and self.data_version in (None, job.data_version))

    def result(self, job: Any, live: Callable[[int, int, dict[str, float]], None] | None) -> Any:
        """Fold ``job.fold``'s ``FoldResult`` from the worker, its epochs passed to ``live`` as they come;
        None when the worker cannot give it (failed, gone, other data): the caller trains it inline."""
        from .fold_task import FoldResult, group_folder

        if not self.serves(job):
            return None
        pending = self._early.pop(job.fold, [])
        while True:
            event = pending.pop(0) if pending else self._next()
            if event is None:
                return self._give_up()
            if "prepared" in event:
                self.data_version = event["prepared"]
                if not self.serves(job):
                    return self._give_up()
                continue
            if "warning" in event:
                _rewarn(event["warning"])
                continue
            fold = event.get("fold")
            if fold != job.fold:  # the worker is ahead of the flow: kept for when the flow gets there
                self._early.setdefault(fold, []).append(event)
                continue
            if "epoch" in event:
                if live is not None:
                    live(job.fold, event["epoch"], event["metrics"])
            elif "result" in event:
                kept = group_folder(self.job["out"], job.fold)
                if kept.exists():
                    shutil.move(str(kept), str(group_folder(job.out, job.fold)))
                fields = event["result"]
                return FoldResult(**{**fields, "live": live is not None,
                                     "pruned": tuple(fields["pruned"]) if fields.get("pruned") else None})
            else:  # "error": trained again inline, where it is reported as any fold's error
                return self._give_up()

    def _next(self) -> dict[str, Any] | None:
        while True:
            try:
                return self._events.get(timeout=1.0)
            except queue.Empty:
                if self.process.poll() is not None and self._events.empty():
                    return None

    def _give_up(self) -> None:
        self._failed = True
        self.close(keep_folder=True)
        return None

    def close(self, keep_folder: bool = False) -> None:
        """Stop the worker (at once: what it trains now is not needed) and, unless kept, remove its folder."""
        self._failed = True
        from .prefect_server import stop

        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        stop(self.process, grace=5.0)
        if not keep_folder:
            shutil.rmtree(self.folder, ignore_errors=True)
        _remove_orphans()  # here, not as the worker starts: the run is over and waits for nothing of it


def _remove_orphans() -> None:
    """Remove the worker folders of commands that are gone: one killed by SIGKILL could not remove its own
    (its folds' outputs, megabytes a run)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        pid = folder.name.removeprefix(PREFIX).split("-", 1)[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _rewarn(warning: list[Any]) -> None:
    """A warning the worker's training showed, shown here as training in this process would show it.

    The worker's filters (the same environment and ``-W`` options, the same modules' filters) decided
    already that it shows: it is shown, not warned again. Warned again, it went through this process's
    filters, which another thread's ``warnings.catch_warnings()`` (MLflow's, while the tracker logs the
    last fold's model) can set to ignore for a moment: a plugin's warning then showed 4 or 5 times in a
    run where training in this process showed it 6, a different count each run.
    """
    name, message, filename, lineno = warning
    warnings.showwarning(message, _category(name), filename, lineno)


@functools.cache
def _category(name: str) -> type[Warning]:
    """The warning class called ``name``: a built-in or scribbles' own, else a stand-in ``UserWarning``
    subclass of that name (a plugin's own class, which this process may not import), made once."""
    known = {cls.__name__: cls for cls in (UserWarning, RuntimeWarning, FutureWarning, DeprecationWarning,
                                           ScribblesWarning)}
    return known.get(name) or type(name, (UserWarning,), {})


@contextlib.contextmanager
def beside(config: Any, allow_dirty: bool, process_ends: bool, server: int | None) -> Iterator[FoldWorker | None]:
    """A fold worker for the block when ``config`` (parsed) wants one (``wanted``), else None; it is stopped
    and its folder removed on every way out. ``process_ends``: this process ends with the command, and may
    lower its own CPU priority for the worker (see ``FoldWorker.prepare``). ``server``: the pid of the
    temporary Prefect server starting beside the run, given the lowest CPU priority (its session's nice 19:
    ``processes.lower_priority``) beside a worker until the flow waits for it: the worker's imports, data
    and first fold are the run's critical path. Measured on 2 cores: the worker's imports and warm-up had
    2.3 s of CPU in 3.1 s when the server's session took its share (at nice 10); in 2.3 s with it lowered.
    """
    global _CURRENT
    worker = FoldWorker(config.model_dump(mode="json"), allow_dirty, process_ends) if wanted(config) else None
    if worker is not None and server is not None:
        lower_priority(server, 19, process_nice=10)  # set back when the flow waits for it (temporary_api)
    _CURRENT = worker
    try:
        yield worker
    finally:
        _CURRENT = None
        if worker is not None:
            worker.close()


def current() -> FoldWorker | None:
    """The worker of the run this process drives (``beside``), or None."""
    return _CURRENT


def result_for(job: Any, live: Callable[[int, int, dict[str, float]], None] | None) -> Any:
    """``job``'s ``FoldResult`` from this run's worker, or None (no worker, or it cannot): train it inline."""
    worker = _CURRENT
    return worker.result(job, live) if worker is not None else None


def decided(folds: list[int]) -> None:
    """Tell this run's worker (if any) which folds the flow trains."""
    if _CURRENT is not None and _CURRENT.active:
        _CURRENT.decided(folds)


# The worker process ---------------------------------------------------------------------------------------


def _serve(parent: int) -> None:
    """The worker's own process, started by process ``parent`` (the command): imports now, then trains
    what ``prepare`` describes, fold by fold."""
    import gc

    from .prefect_server import _die_with, _watch_parent

    _die_with(parent)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="watch-parent").start()
    wire = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # what techniques print goes to the worker's log, never into the messages
    gc.disable()
    from .fold_task import FoldJob, live_epochs, plan_for, prepare, run_job  # torch and the techniques, now

    gc.freeze()
    gc.enable()

    def send(message: dict[str, Any]) -> None:
        wire.write(json.dumps(message) + "\n")

    def show(message: Any, category: type[Warning], filename: str, lineno: int, *_: Any) -> None:
        send({"warning": [category.__name__, str(message), filename, lineno]})

    warnings.showwarning = show
    lines = _Lines()
    message = lines.next(None)
    if message and "warm" in message:
        _warm(message["warm"]["config"], message["warm"]["allow_dirty"])
        message = lines.next(None)
    if not message or "prepare" not in message:
        return
    job = message["prepare"]
    from .fold_task import project_root

    with project_root(job["root"]):
        ready = prepare(job["config"], job["allow_dirty"])
    send({"prepared": ready.dataset.version})
    plan_for(job["config"], job["allow_dirty"])
    chosen: set[int] | None = None
    for fold in ready.folds:
        message = lines.next(0.0)
        if message is not None and "train" in message:
            chosen = set(message["train"])
        if message == {}:  # the command closed the pipe: it needs nothing more
            return
        if chosen is not None and fold.index not in chosen:
            continue
        fold_job = FoldJob(job["config"], job["allow_dirty"], fold.index, ready.dataset.version, job["root"],
                           job["out"])

        def epoch(index: int, number: int, metrics: dict[str, float]) -> None:
            send({"fold": index, "epoch": number, "metrics": metrics})

        try:
            with live_epochs(job["out"], epoch):
                result = run_job(fold_job)
        except BaseException as exc:  # the command trains this fold again, and reports what it raises
            send({"fold": fold.index, "error": f"{type(exc).__name__}: {exc}"})
            return
        send({"fold": fold.index, "result": {**asdict(result), "live": False}})
    lines.next(None)  # wait for the command to close the pipe (or to end)


def _warm(config: dict[str, Any], allow_dirty: bool) -> None:
    """While the command checks its input: the config resolved, and what the first fold imports on first
    use (the strategy's ``prepare``, scikit-learn's pipelines for preprocessing), seconds otherwise spent
    in it. No data is read and nothing written. Best effort: what fails here fails again where needed."""
    from .fold_task import plan_for

    with contextlib.suppress(Exception):
        plan_for(config, allow_dirty)[0].strategy.prepare()
    with contextlib.suppress(ImportError):
        import sklearn.compose
        import sklearn.pipeline  # noqa: F401


class _Lines:
    """The command's messages on this process's standard input, one JSON object a line. Read from the file
    descriptor itself: a buffered reader could hold a line that ``select`` then does not see."""

    def __init__(self) -> None:
        self.buffer = b""

    def next(self, timeout: float | None) -> dict[str, Any] | None:
        """The next message: None when none came within ``timeout`` (None: wait), {} when the pipe closed."""
        while b"\n" not in self.buffer:
            if timeout is not None and not select.select([0], [], [], timeout)[0]:
                return None
            chunk = os.read(0, 65536)
            if not chunk:
                return {}
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line) if line.strip() else {}


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
