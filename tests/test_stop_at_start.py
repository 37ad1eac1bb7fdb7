"""A stop (Ctrl-C, SIGTERM) the moment a run is created: exit 130/143, one line, the run KILLED, resumable.

The stop is not left to timing: a plugin (installed as a distribution, loaded from its entry point) makes
MLflow's ``create_run`` raise the signal in this process just after the store wrote the run and before the
tracker has its id, the window where a stop used to leave the run RUNNING (or MLflow's SQL session cut
mid-flush, reported as a store failure with a resume line that could not work).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
import yaml
from helpers import fake_dist, run_cli
from scribbles.testing import synthetic_frame

#: STOP_AT_CREATE_RUN=SIGINT or SIGTERM: raises that signal as MLflow's create_run has written the first run;
#: STOP_AT_RUN_START=SIGINT: raises it as the run starts, before any tracker has (re)opened its run.
STOPPER = '''
    import os
    import signal

    from scribbles.core import hookimpl

    @hookimpl(tryfirst=True)  # before the MLflow tracker's start hook: its create_run is the one wrapped
    def scribbles_run_start(ctx):
        if os.environ.get("STOP_AT_RUN_START"):
            signal.raise_signal(getattr(signal, os.environ["STOP_AT_RUN_START"]))
        name = os.environ.get("STOP_AT_CREATE_RUN")
        if name:
            from mlflow.tracking import MlflowClient

            original = MlflowClient.create_run

            def create_run(self, *args, **kwargs):
                MlflowClient.create_run = original
                run = original(self, *args, **kwargs)  # the run is in the store now
                signal.raise_signal(getattr(signal, name))  # its handler runs here, before the tracker has the id
                return run

            MlflowClient.create_run = create_run
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stop-at-start")
    synthetic_frame(rows=60).to_csv(root / "rows.csv", index=False)
    config = {"experiment": "stop-at-start",
              "data": {"name": "file", "path": "rows.csv", "target": "y", "group": "g", "time": "t"},
              "split": {"name": "kfold", "n_splits": 2}, "model": {"name": "mlp", "hidden": [4]},
              "train": {"epochs": 1, "batch_size": 64}}
    (root / "run.yaml").write_text(yaml.safe_dump(config))
    (root / "site").mkdir()
    fake_dist(root / "site", "scribbles-stopper", STOPPER)
    return root


def env_for(project: Path, store: str, prefect_api: str, **stop: str) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{project / store}", "PREFECT_API_URL": prefect_api,
            "PYTHONPATH": str(project / "site"), "SCRIBBLES_DISABLE_PLUGIN_AUTOLOAD": "0", **stop}


def runs(db: Path) -> list[tuple[str, str, str]]:
    """(run id, name, status) of every MLflow run in the store, read directly."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as con:
        return con.execute("SELECT run_uuid, name, status FROM runs").fetchall()


@pytest.mark.parametrize(("stop", "code", "line"), [("SIGINT", 130, "stopped"),
                                                    ("SIGTERM", 143, "stopped by SIGTERM")])
def test_a_stop_as_the_parent_run_is_created_ends_it_killed_and_resume_finishes_it(
        project: Path, prefect_api: str, stop: str, code: int, line: str) -> None:
    store = f"{stop}.db"
    stopped = run_cli("run", "run.yaml", cwd=project, env=env_for(project, store, prefect_api, STOP_AT_CREATE_RUN=stop))
    assert stopped.returncode == code, stopped.stderr
    (run_id, _, status), = runs(project / store)  # the parent only: no fold started
    assert status == "KILLED", status
    lines = [text for text in stopped.stderr.splitlines() if text.strip()]
    assert lines == [f"{line}; finish the run with `scribbles resume {run_id}`"], stopped.stderr
    if stop == "SIGTERM":
        return  # the same record as SIGINT's: resumed once (below), to keep the test short
    # A resume stopped before it reopened the run leaves it as it was, and says how to finish it.
    again = run_cli("resume", run_id, cwd=project, env=env_for(project, store, prefect_api, STOP_AT_RUN_START=stop))
    assert again.returncode == code, again.stderr
    assert [text for text in again.stderr.splitlines() if text.strip()] == lines, again.stderr
    assert runs(project / store) == [(run_id, runs(project / store)[0][1], "KILLED")]
    # The printed command works: the config was recorded before the run could be named.
    resumed = run_cli("resume", run_id, cwd=project, env=env_for(project, store, prefect_api))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = runs(project / store)
    assert {status for _, _, status in after} == {"FINISHED"} and len(after) == 3, after  # parent and 2 folds
    assert run_id in {rid for rid, _, _ in after}  # finished in place, not a new parent run



@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_stop_while_the_command_still_imports_is_one_line(tmp_path: Path, signum: str) -> None:
    """Ctrl-C or SIGTERM a fraction of a second in, while the command imports its modules (before its own
    handling is installed): one `stopped` line, exit 130/143, no traceback, nothing made. (Ctrl-C printed a
    KeyboardInterrupt traceback from inside pydantic; SIGTERM ended the command without a word.)"""
    import os
    import signal
    import subprocess
    import time

    from helpers import SCRIBBLES

    stopped = 0
    for delay in (0.05, 0.15, 0.3):
        command = subprocess.Popen(
            [SCRIBBLES, "run", "missing.yaml"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(delay)
        os.killpg(command.pid, getattr(signal, signum))
        _, err = command.communicate(timeout=60)
        if command.returncode == 2:  # the command got as far as its verb first (a fast machine): no stop to see
            continue
        # The interpreter itself was still starting, or pip's console script was still importing the entry
        # point (a slow machine): none of scribbles' code ran yet, so it has nothing to say about the stop.
        before_entry = "init_import_site" in err or "from scribbles.flows.entry import main\n" in err
        if (command.returncode == -getattr(signal, signum) and (not err or before_entry)) or before_entry:
            continue
        stopped += 1
        assert command.returncode == (130 if signum == "SIGINT" else 143), (delay, err)
        assert err == ("stopped\n" if signum == "SIGINT" else "stopped by SIGTERM\n"), (delay, err)
        assert not list(tmp_path.iterdir())
    assert stopped, "every stop came after the imports: the case was not exercised"
