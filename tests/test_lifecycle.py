"""Every run kind ends its run exactly once through one lifecycle (flows/lifecycle.run_lifecycle)."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scribbles.core import RunContext, load_registry
from scribbles.core.markers import hookimpl
from scribbles.flows.lifecycle import observing, run_lifecycle


class Recorder:
    """A plugin that notes each lifecycle hook it sees."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def scribbles_run_start(self, ctx: Any) -> None:
        self.seen.append("start")

    @hookimpl
    def scribbles_run_end(self, ctx: Any) -> None:
        self.seen.append(f"end {sorted(ctx.summary)} {len(ctx.trials)}")

    @hookimpl
    def scribbles_run_error(self, ctx: Any) -> None:
        self.seen.append(f"error {ctx.status} {type(ctx.error).__name__}")


def _run() -> RunContext:
    return RunContext("lifecycle", {}, {}, {}, "v1", "data", None, 2, run_name="r")


def test_a_block_that_ends_finishes_once_and_observers_see_it() -> None:
    registry, tracker, observer = load_registry(), Recorder(), Recorder()
    with observing(observer), run_lifecycle(registry, _run(), [tracker]) as ending:
        ending.end({"accuracy_mean": 0.5}, [{"trial": 0}])
    assert tracker.seen == observer.seen == ["start", "end ['accuracy_mean'] 1"]
    assert not registry.is_registered(tracker) and not registry.is_registered(observer)


@pytest.mark.parametrize(("error", "status"), [(ValueError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_an_error_or_a_stop_ends_the_run_failed_or_killed(error: type[BaseException], status: str) -> None:
    tracker = Recorder()
    with pytest.raises(error), run_lifecycle(load_registry(), _run(), [tracker]):
        raise error("stop")
    assert tracker.seen == ["start", f"error {status} {error.__name__}"]


def test_a_stop_that_surfaces_as_another_error_ends_the_run_killed_and_the_command_stopped(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C while a C extension initialises surfaces as its ImportError (seen in CI: scipy's
    "initialization failed", caused by the KeyboardInterrupt): the run ends KILLED and the command exits 130."""
    from scribbles.flows.cli import _run as run_verb

    def interrupted_import() -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as stop:
            raise ImportError("initialization failed") from stop

    tracker = Recorder()
    with pytest.raises(ImportError), run_lifecycle(load_registry(), _run(), [tracker]):
        interrupted_import()
    assert tracker.seen == ["start", "error KILLED ImportError"]
    assert run_verb(lambda args: interrupted_import() or 0, None) == 130  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert err.strip() == "stopped" and "Traceback" not in err


def test_sigterm_in_the_block_ends_the_run_killed() -> None:
    tracker = Recorder()
    with pytest.raises(KeyboardInterrupt), run_lifecycle(load_registry(), _run(), [tracker]):
        os.kill(os.getpid(), signal.SIGTERM)
    assert tracker.seen == ["start", "error KILLED Terminated"]


def test_a_stop_after_the_run_ended_leaves_it_finished_and_names_nothing_to_resume() -> None:
    """Ctrl-C after ``Ending.end`` (the parent FINISHED, the command not yet out of the block): the stop goes
    on up (exit 130), the run is not ended again, and the stop line names no run (resume would refuse it)."""
    from scribbles.flows.interrupts import ended_early

    ended_early(clear=True)
    run, tracker = _run(), Recorder()
    run.links["mlflow_run_id"] = "r1"
    with pytest.raises(KeyboardInterrupt), run_lifecycle(load_registry(), run, [tracker]) as ending:
        ending.end({"accuracy_mean": 0.5})
        raise KeyboardInterrupt
    assert tracker.seen == ["start", "end ['accuracy_mean'] 0"]
    assert ended_early() is None


def test_a_stop_inside_the_end_hook_after_finished_was_written_names_nothing_to_resume(tmp_path: Path) -> None:
    """Ctrl-C inside the end hook once the tracker wrote FINISHED (the MLflow tracker writes it on its logging
    thread, then the hook tidies up): the store says FINISHED, so the stop goes on up without naming the run or
    ending it again. (A trial under load: the stop line named a run that `scribbles resume` then refused.)"""
    from mlflow.tracking import MlflowClient
    from scribbles.core import Tracker
    from scribbles.flows.interrupts import ended_early
    from scribbles.plugins.trackers.run_store import MlflowRunStore

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("lifecycle")).info.run_id

    class FinishesThenStops(Tracker, Recorder):
        """Writes FINISHED, then the stop lands before its end hook returns."""

        name = "finishes_then_stops"

        def store(self) -> MlflowRunStore:
            return MlflowRunStore(uri)

        @hookimpl
        def scribbles_run_end(self, ctx: Any) -> None:
            client.set_terminated(run_id, "FINISHED")
            raise KeyboardInterrupt

    ended_early(clear=True)
    run, tracker = _run(), FinishesThenStops()
    Recorder.__init__(tracker)
    run.links["mlflow_run_id"] = run_id
    with pytest.raises(KeyboardInterrupt), run_lifecycle(load_registry(), run, [tracker]) as ending:
        ending.end({"accuracy_mean": 0.5})
    assert tracker.seen == ["start"], tracker.seen  # no error hook: nothing was ended again
    assert ended_early() is None
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_block_that_forgets_to_end_fails_the_run_instead_of_leaving_it_running() -> None:
    tracker = Recorder()
    with pytest.raises(RuntimeError, match="was not ended"), run_lifecycle(load_registry(), _run(), [tracker]):
        pass
    assert tracker.seen == ["start", "error FAILED RuntimeError"]


def test_a_sweep_holds_its_trackers_only_around_its_own_hooks() -> None:
    """hold=False: the sweep's trackers must not see its trials' hooks (each trial registers its own)."""
    registry, tracker = load_registry(), Recorder()
    with run_lifecycle(registry, _run(), [tracker], hold=False) as ending:
        assert not registry.is_registered(tracker)
        registry.hook.scribbles_run_start(ctx=_run())  # a trial's start: not the sweep tracker's business
        ending.end({})
    assert tracker.seen == ["start", "end [] 0"]


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt in the test (a runner started in the background may ignore SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class StopsAtStart(Recorder):
    """A tracker whose start hook creates its run, then is stopped (Ctrl-C) before it returns."""

    @hookimpl
    def scribbles_run_start(self, ctx: Any) -> None:
        self.seen.append("start")
        ctx.links["mlflow_run_id"] = "r1"
        signal.raise_signal(signal.SIGINT)


def test_a_stop_in_the_start_hook_ends_the_run_killed_and_names_it(ctrl_c: None) -> None:
    """The start hook runs inside the lifecycle's try: what it started is ended (it used to stay RUNNING)."""
    from scribbles.flows.interrupts import ended_early

    ended_early(clear=True)
    tracker = StopsAtStart()
    with pytest.raises(KeyboardInterrupt), run_lifecycle(load_registry(), _run(), [tracker]):
        pytest.fail("the block ran after a stop in the start hook")
    assert tracker.seen == ["start", "error KILLED KeyboardInterrupt"]
    assert ended_early(clear=True) == "r1"


@pytest.mark.parametrize(("sweep", "named"), [("optuna", "r1"), ("grid", None)])
def test_a_stopped_sweep_is_named_only_when_resume_can_finish_it(ctrl_c: None, sweep: str, named: str | None) -> None:
    """`scribbles resume` refuses a grid or random sweep run (its trials resume one by one): the stop line
    must not name it; an Optuna sweep resumes as a whole."""
    from scribbles.flows.interrupts import ended_early

    ended_early(clear=True)
    run = _run()
    run.kind, run.tags = "sweep", {"sweep": sweep}
    with pytest.raises(KeyboardInterrupt), run_lifecycle(load_registry(), run, [StopsAtStart()], hold=False):
        pass
    assert ended_early(clear=True) == named


class StoppedTwice(Recorder):
    """A tracker whose error hook is interrupted again (a second Ctrl-C, a SIGTERM) while it ends its run."""

    @hookimpl
    def scribbles_run_error(self, ctx: Any) -> None:
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGTERM)
        self.seen.append(f"error {ctx.status} {type(ctx.error).__name__}")


def test_a_second_stop_does_not_cut_the_final_statuses_short(ctrl_c: None) -> None:
    tracker = StoppedTwice()
    with pytest.raises(ValueError), run_lifecycle(load_registry(), _run(), [tracker]):
        raise ValueError("broken")
    assert tracker.seen == ["start", "error FAILED ValueError"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stops_deferred_holds_a_stop_until_the_block_ends(signum: int, ctrl_c: None) -> None:
    """core.stops_deferred: the block runs to its end, then the stop takes effect with the handler the
    process had (SIGTERM here as the command line has it: Terminated); nested blocks wait for the outer one."""
    from scribbles.core import stops_deferred
    from scribbles.flows.interrupts import Terminated, raise_terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    done: list[str] = []
    try:
        with pytest.raises(KeyboardInterrupt) as stop, stops_deferred():
            with stops_deferred():
                signal.raise_signal(signum)
                signal.raise_signal(signum)
                done.append("inner")
            done.append("outer")
        assert done == ["inner", "outer"]
        assert isinstance(stop.value, Terminated) == (signum == signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is raise_terminated
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with stops_deferred():  # a stop the process ignores stays ignored
            signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_store_error_that_a_stop_caused_is_the_stop_not_a_store_failure() -> None:
    """Ctrl-C inside an MLflow call surfaced as SQLAlchemy's "Query-invoked autoflush" error, reported as
    a broken store (exit 1); a stop in the error's chain makes it the stop."""
    import sqlalchemy.exc
    from scribbles.flows.failures import as_failure

    def store_error(interrupted: bool) -> BaseException:
        try:
            try:
                if interrupted:
                    raise KeyboardInterrupt
                raise sqlite3.OperationalError("disk I/O error")
            except BaseException as cause:
                raise sqlalchemy.exc.StatementError("Query-invoked autoflush", "INSERT", {}, cause) from cause
        except sqlalchemy.exc.StatementError as exc:
            return exc

    assert as_failure(store_error(interrupted=True)) is None
    assert "MLflow store" in str(as_failure(store_error(interrupted=False)))


def test_a_stop_inside_a_sqlite_write_leaves_no_lock_for_the_final_status(tmp_path: Path, ctrl_c: None) -> None:
    """Ctrl-C inside the autoflush of MLflow's create_run on the main thread (real SQLite store; WAL mode, as
    scribbles makes its stores, locks the same): the cursor left in the traceback's frames held SQLite's write
    lock, so the tracker's final status waited 20 s (MLflow's busy timeout) and failed ("database is locked"),
    the run left RUNNING. The lifecycle lets go of those frames (failed 2 of 2 without it)."""
    import threading
    import time

    import sqlalchemy
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("locks")
    run_id = client.create_run(experiment).info.run_id

    class Ends(Recorder):
        @hookimpl
        def scribbles_run_error(self, ctx: Any) -> None:
            began = time.monotonic()
            client.set_terminated(run_id, ctx.status)
            self.seen.append(f"ended in {time.monotonic() - began:.0f} s")

    def stop_in_insert(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO tags") and threading.current_thread() is threading.main_thread():
            sqlalchemy.event.remove(sqlalchemy.engine.Engine, "after_cursor_execute", stop_in_insert)
            signal.raise_signal(signal.SIGINT)

    tracker = Ends()
    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "after_cursor_execute", stop_in_insert)
    with pytest.raises(KeyboardInterrupt), run_lifecycle(load_registry(), _run(), [tracker]):
        client.create_run(experiment, tags={"made": "by a plugin that holds no stops"})  # the tags: autoflush
    assert tracker.seen == ["start", "ended in 0 s"]
    assert client.get_run(run_id).info.status == "KILLED"


def test_a_stop_a_library_turned_into_its_own_error_is_still_a_stop(capfd: pytest.CaptureFixture[str]) -> None:
    """A library may catch the KeyboardInterrupt of a Ctrl-C and raise an error of its own with the stop only
    in its text, nothing chained (a trial saw Prefect's settings serializer fail with "Error calling
    function '_ser_model': KeyboardInterrupt"): the command still says `stopped` and exits 130, as for a
    Ctrl-C anywhere else. The same error without a stop is still an unexpected failure (exit 1)."""
    import argparse
    import os
    import signal

    from scribbles.flows import cli
    from scribbles.flows.interrupts import stops_noted

    def library_call(stop: bool) -> None:
        message = "not serializable"
        try:
            if stop:
                os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C lands inside the library
        except KeyboardInterrupt as exc:
            message = f"Error calling function '_ser_model': {exc!r}"
        raise RuntimeError(message)  # outside the handler: nothing chained

    for stop, code, line in ((True, 130, "stopped"), (False, 1, "failed: an unexpected error")):
        with stops_noted():
            found = cli._run(lambda args, stop=stop: library_call(stop), argparse.Namespace())  # type: ignore[misc]
        err = capfd.readouterr().err
        assert found == code and err.strip().splitlines()[-1].startswith(line), err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_that_lands_in_a_finaliser_is_delivered_again(signum: int) -> None:
    """Python drops a KeyboardInterrupt raised inside ``__del__`` or a weakref callback (it only prints
    "Exception ignored in ..."): a trial's Ctrl-C during `resume` landed there and the run trained on to
    FINISHED. Inside the command's handlers the stop is sent again and ends the command."""
    import time

    from scribbles.flows.interrupts import Terminated, stops_noted

    class Finalised:
        def __del__(self) -> None:
            os.kill(os.getpid(), signum)  # the user's stop, handled while the finaliser runs

    expected = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    with stops_noted(), pytest.raises(expected):
        Finalised()  # dropped at once: its __del__ runs here
        for _ in range(100):  # the command's own work
            time.sleep(0.05)


def test_what_a_fold_reports_is_read_only_for_every_tracker() -> None:
    """Every tracker gets the same context, in an order nothing relies on, and the MLflow tracker reads it
    later on its logging thread: a tracker that added to ``ctx.metrics`` changed what the others logged
    depending on that order and on timing (exit 0). Now the change is refused, naming the field; the
    flow's own dict (the run's summary) is a separate copy; trackers still serialise it with json."""
    import json

    from scribbles.core.context import EpochContext, FoldEndContext, RunEndContext

    metrics = {"accuracy": 0.5}
    ctx = FoldEndContext(None, 0, metrics, artifacts={}, history=[{"train_loss": 1.0}])  # type: ignore[arg-type]
    for change in (lambda: ctx.metrics.__setitem__("extra", 1.0), lambda: ctx.metrics.update(extra=1.0),
                   lambda: ctx.artifacts.setdefault("plot", "x.png"), lambda: ctx.history[0].pop("train_loss")):
        with pytest.raises(TypeError, match=r"FoldEndContext\.(metrics|artifacts|history) is read-only.*Metric"):
            change()
    assert metrics == {"accuracy": 0.5} and ctx.metrics is not metrics
    assert json.loads(json.dumps({"m": ctx.metrics, "h": ctx.history})) == {"m": metrics, "h": [{"train_loss": 1.0}]}
    # Assigning a new dict to the field changed what the trackers after it logged, as adding to it did.
    with pytest.raises(TypeError, match=r"FoldEndContext\.metrics is read-only"):
        ctx.metrics = {**ctx.metrics, "accuracy": 0.999}
    ctx.reuse = "cached"  # what is not reported stays as dataclasses have it
    with pytest.raises(TypeError, match=r"EpochContext\.metrics is read-only"):
        EpochContext(None, 0, 1, {"valid_loss": 1.0}).metrics["x"] = 2.0  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"RunEndContext\.summary is read-only"):
        RunEndContext(None, {"accuracy_mean": 0.5}).summary.clear()  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"RunEndContext\.summary is read-only"):
        RunEndContext(None, {"accuracy_mean": 0.5}).summary = {"accuracy_mean": 0.999}  # type: ignore[arg-type]
