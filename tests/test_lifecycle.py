"""Every run kind ends its run exactly once through one lifecycle (flows/lifecycle.run_lifecycle)."""

from __future__ import annotations

import os
import signal
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
