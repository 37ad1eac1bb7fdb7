"""Faults injected into real runs (real processes, signals, Prefect server and SQLite MLflow store).

Every case ends cleanly: one line, the documented exit code, no MLflow run left RUNNING, and no
process of scribbles' left behind. These runs use no configured ``PREFECT_API_URL``: each starts its
own temporary Prefect server (flows/prefect_server.py), which is what the faults are about.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import SCRIBBLES
from scribbles.testing import synthetic_frame

#: Seconds to wait for a run to reach training (the temporary server starts first: slow on 2 busy cores).
START_TIMEOUT = 240


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a CSV and a config whose run trains until stopped (1,000,000 epochs)."""
    root = tmp_path_factory.mktemp("faults")
    synthetic_frame(rows=200).to_csv(root / "good.csv", index=False)
    config = {
        "experiment": "faults",
        "data": {"name": "file", "path": "good.csv", "target": "y", "group": "g", "time": "t"},
        "split": {"name": "kfold", "n_splits": 2},
        "model": {"name": "mlp", "hidden": [8]},
        "train": {"epochs": 1_000_000, "batch_size": 16},
    }
    (root / "forever.yaml").write_text(yaml.safe_dump(config))
    (root / "short.yaml").write_text(yaml.safe_dump({**config, "train": {"epochs": 1, "batch_size": 64}}))
    return root


def start(project: Path, config: str, store: str) -> subprocess.Popen[str]:
    """`scribbles run CONFIG` in a process group of its own, on its own store, with no Prefect server given,
    and a temporary folder of its own (``tmp-STORE``)."""
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / store}"
    env["TMPDIR"] = str(project / f"tmp-{store}")
    (project / f"tmp-{store}").mkdir(exist_ok=True)

    def default_sigint() -> None:  # a test runner started in the background may have SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen([SCRIBBLES, "run", config], cwd=project, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, preexec_fn=default_sigint)


def parent_id(db: Path) -> str:
    """The id of the store's one parent run (the run without a parent)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as con:
        rows = con.execute("SELECT run_uuid FROM runs WHERE run_uuid NOT IN (SELECT run_uuid FROM tags WHERE "
                           "key = 'mlflow.parentRunId')").fetchall()
    assert len(rows) == 1, rows
    return str(rows[0][0])


def statuses(db: Path) -> dict[str, str]:
    """Run name -> status of every MLflow run in the store (read directly: no MLflow in the test)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as con:
        return dict(con.execute("SELECT name, status FROM runs").fetchall())


def wait_training(process: subprocess.Popen[str], db: Path) -> psutil.Process:
    """Wait until a fold run is RUNNING; return the run's temporary Prefect server process."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        with contextlib.suppress(sqlite3.Error):
            if db.exists() and any(name.startswith("fold-") and status == "RUNNING"
                                   for name, status in statuses(db).items()):
                return server_of(process)
        time.sleep(0.5)
    raise AssertionError(f"no fold started within {START_TIMEOUT} s")


def server_of(process: subprocess.Popen[str]) -> psutil.Process:
    """The temporary Prefect server started by ``process``."""
    children = psutil.Process(process.pid).children(recursive=True)
    servers = [c for c in children if "scribbles.flows.prefect_server" in " ".join(c.cmdline())]
    assert len(servers) == 1, [c.cmdline() for c in children]
    return servers[0]


def gone(proc: psutil.Process, within: float) -> bool:
    """True when ``proc`` has exited within ``within`` seconds."""
    _, alive = psutil.wait_procs([proc], timeout=within)
    return not alive


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_sigkill_takes_the_temporary_prefect_server_along(project: Path) -> None:
    """SIGKILL of `scribbles run` (nothing of it can clean up) still ends its Prefect server within 5 s."""
    process = start(project, "forever.yaml", "killed.db")
    try:
        server = wait_training(process, project / "killed.db")
        process.kill()
        process.wait(10)
        assert gone(server, 5), "the temporary Prefect server outlived scribbles"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.parametrize(("sig", "code", "line"), [(signal.SIGINT, 130, "stopped"),
                                                   (signal.SIGTERM, 143, "stopped by SIGTERM")])
def test_a_stop_to_the_process_group_ends_in_5_s_with_runs_killed(project: Path, sig: int, code: int,
                                                                  line: str) -> None:
    """Ctrl-C or SIGTERM to the whole group (a terminal, `docker stop`): exit 130/143 in 5 s, runs KILLED."""
    store = f"stop-{sig}.db"
    process = start(project, "forever.yaml", store)
    try:
        server = wait_training(process, project / store)
        began = time.monotonic()
        os.killpg(process.pid, sig)
        _, err = process.communicate(timeout=30)
        took = time.monotonic() - began
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == code, err
    assert took < 5, f"took {took:.1f} s"
    # The line says how to finish the run: resume takes the parent's id.
    assert error_lines(err) == [f"{line}; finish the run with `scribbles resume {parent_id(project / store)}`"], err
    runs = statuses(project / store)
    assert "RUNNING" not in runs.values() and "KILLED" in runs.values(), runs
    assert gone(server, 5)


def test_a_lost_prefect_server_fails_the_run_in_one_line(project: Path) -> None:
    """The temporary server killed mid-run: exit 1 within seconds, one failed: line, runs FAILED, not RUNNING."""
    process = start(project, "forever.yaml", "lost.db")
    try:
        server = wait_training(process, project / "lost.db")
        server.kill()
        _, err = process.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 1, err
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("failed: lost the temporary Prefect server"), err
    assert lines[0].endswith(f"finish them with `scribbles resume {parent_id(project / 'lost.db')}`"), err
    runs = statuses(project / "lost.db")
    assert "RUNNING" not in runs.values() and "FAILED" in runs.values(), runs


def test_runs_started_together_each_have_their_own_server(project: Path) -> None:
    """Three runs at once each bind their own port before their server starts: all finish, none crosses."""
    processes = [start(project, "short.yaml", f"together-{i}.db") for i in range(3)]
    try:
        outputs = [p.communicate(timeout=400) for p in processes]
    finally:
        for p in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
    for p, (out, err) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, out + err
    for i in range(3):
        runs = statuses(project / f"together-{i}.db")
        assert set(runs.values()) == {"FINISHED"} and len(runs) == 3, runs
        # Each server's output went to a temporary file, appended to the project's log when it stopped.
        assert not list((project / f"tmp-together-{i}.db").glob("scribbles-prefect-server-*")), i
    # A server that said anything has it in the project's log; one that said nothing leaves no empty file.
    log = project / ".scribbles" / "prefect-server.log"
    assert not log.exists() or log.stat().st_size > 0


def test_the_temporary_server_holds_its_port_from_the_start(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The port is bound before the server process exists, so no other process can take it; the server
    process is a child of this one and has exited when the block ends. Flows in the block send no
    heartbeats (the server ends with the run: nothing lasts to be told that the run's process died),
    and the server's first API request (about half a second) is made from a thread that then ends."""
    import socket
    import threading
    import time

    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings
    from scribbles.flows.prefect_server import temporary_api

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(updates={PREFECT_API_URL: None}), \
            temporary_api(log=tmp_path / "server.log") as server:
        assert server is not None
        assert get_current_settings().flows.heartbeat_frequency is None
        deadline = time.monotonic() + 60
        while any(t.name == "warm-prefect-server" for t in threading.enumerate()) and time.monotonic() < deadline:
            time.sleep(0.1)  # the thread that makes that request ends once it is answered
        assert not any(t.name == "warm-prefect-server" for t in threading.enumerate())
        port = int(os.environ["PREFECT_API_URL"].rsplit(":", 1)[1].split("/")[0])
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))
        assert psutil.Process(server.pid).ppid() == os.getpid()
    assert server.poll() is not None
    assert "PREFECT_API_URL" not in os.environ


def test_a_failing_warm_up_stops_the_temporary_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What runs beside the server's start (``prepare``: imports, the MLflow store) may fail: the server
    it raced has ended, the environment is as before, and the error is the caller's to report."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from scribbles.flows.prefect_server import temporary_api

    before = {child.pid for child in psutil.Process().children()}
    seen: list[psutil.Process] = []

    def prepare() -> None:
        seen.extend(child for child in psutil.Process().children() if child.pid not in before)
        raise RuntimeError("warm-up failed")

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(updates={PREFECT_API_URL: None}), pytest.raises(RuntimeError, match="warm-up failed"), \
            temporary_api(log=tmp_path / "server.log", prepare=prepare):
        pytest.fail("the block ran although its preparation failed")
    assert len(seen) == 1, seen  # the server was starting while prepare ran
    assert not seen[0].is_running()
    assert "PREFECT_API_URL" not in os.environ


def test_the_warm_up_readies_a_new_store_and_leaves_its_errors_to_the_run(tmp_path: Path) -> None:
    """The MLflow tracker's ``prepare`` creates a new SQLite store's tables (write-ahead logging on)
    before the run; a store it cannot make raises nothing there: the run's start reports it."""
    from scribbles.core import create

    store = tmp_path / "new.db"
    create("tracker", "mlflow", tracking_uri=f"sqlite:///{store}").prepare()
    with contextlib.closing(sqlite3.connect(store)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert {"experiments", "runs", "metrics"} <= tables and mode == "wal", (tables, mode)
    (tmp_path / "a-file").write_text("not a folder")
    create("tracker", "mlflow", tracking_uri=f"sqlite:///{tmp_path / 'a-file' / 'store.db'}").prepare()


def test_a_diverging_trial_fails_alone_and_ranks_last(project: Path, prefect_api: str) -> None:
    """train.lr 1e30 among three trials: that trial ends FAILED with its reason, the others run, the sweep
    finishes with the failed trial ranked last (exit 0: the sweep's own run FINISHED, as its status says)."""
    config = yaml.safe_load((project / "short.yaml").read_text())
    config["sweep"] = {"grid": {"train.lr": [0.001, 1e30, 0.01]}}
    (project / "sweep.yaml").write_text(yaml.safe_dump(config))
    env = {"PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'sweep.db'}"}
    result = subprocess.run([SCRIBBLES, "run", "sweep.yaml"], cwd=project, env={**os.environ, **env},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "trial 1 failed: train_loss is nan at epoch 0; lower train.lr" in result.stdout, result.stdout
    rows = [line for line in result.stdout.splitlines() if "│" in line and line.split("│")[1].strip().isdigit()]
    assert rows[-1].split("│")[2].strip() == "1e+30" and "failed" in rows[-1], rows
    runs = statuses(project / "sweep.db")
    trials = {name: status for name, status in runs.items() if name.startswith("trial ")}
    assert sorted(trials.values()) == ["FAILED", "FINISHED", "FINISHED"], runs
    assert runs["sweep of 3 trials"] == "FINISHED" and "RUNNING" not in runs.values(), runs


def test_divergence_is_one_failed_line(project: Path, prefect_api: str) -> None:
    """A run whose loss diverges: exit 1, one failed: line with the fix, runs FAILED."""
    env = {"PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'diverged.db'}"}
    result = subprocess.run([SCRIBBLES, "run", "short.yaml", "--set", "train.lr=1e30"], cwd=project,
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    assert error_lines(result.stderr) == ["failed: train_loss is nan at epoch 0; lower train.lr"], result.stderr
    runs = statuses(project / "diverged.db")
    assert "RUNNING" not in runs.values() and "FAILED" in runs.values(), runs


def test_a_failed_checkpoint_write_is_one_error_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A write the OS refuses part-way (a file-size limit: EFBIG, as ENOSPC on a full disk) ends as one
    ScribblesError naming train.checkpoint_dir; no partial ``.checkpoint.pt.<pid>.tmp`` is left."""
    import resource

    import torch
    from scribbles.core import ScribblesError
    from scribbles.core.training import atomic_save

    target = tmp_path / "checkpoint.pt"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing us
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))
        with pytest.raises(ScribblesError, match=r"train.checkpoint_dir: cannot write the checkpoint .*checkpoint.pt"):
            atomic_save({"w": torch.zeros(1 << 20)}, target)  # 4 MiB of weights
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert list(tmp_path.iterdir()) == []


def test_an_unloadable_checkpoint_is_set_aside_and_the_fold_trains_from_the_start(tmp_path: Path) -> None:
    """A checkpoint cut short: a warning, the file renamed .unloadable, training from epoch 0 to the end."""
    import torch
    from scribbles.core import TrainConfig
    from scribbles.core.training import CheckpointWarning, atomic_save, train_single

    path = tmp_path / "checkpoint.pt"
    atomic_save({"epoch": 0, "history": [{"train_loss": 1.0}], "model": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:200])  # truncated
    torch.manual_seed(0)
    x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    epochs = []
    with pytest.warns(CheckpointWarning, match="cannot be loaded .*set aside as checkpoint.pt.unloadable"):
        result = train_single(model, _BatchLoss(), (x, y), (x, y),
                              TrainConfig(epochs=2, batch_size=8, device="cpu"),
                              [lambda epoch, metrics: epochs.append(epoch)], path)
    assert epochs == [0, 1] and len(result.history) == 2
    assert (tmp_path / "checkpoint.pt.unloadable").exists()


class _BatchLoss:
    """Cross-entropy in the project's loss convention: ``loss(outputs, (x, y))``."""

    def __call__(self, outputs, batch):  # type: ignore[no-untyped-def]
        import torch

        return torch.nn.functional.cross_entropy(outputs, batch[1])


def test_nobody_joining_a_multi_node_run_ends_it_after_train_timeout(project: Path, prefect_api: str) -> None:
    """train.nodes=2 and no second machine: the run fails after train.timeout with one line naming the
    rendezvous endpoint and how to join it; its runs end FAILED."""
    from scribbles.flows.prefect_server import free_port

    endpoint = f"127.0.0.1:{free_port()}"
    env = {"PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'alone.db'}",
           "SCRIBBLES_JOB_TOKEN": "a-shared-secret-of-the-test"}  # multi-machine jobs need one (issue 15)
    began = time.monotonic()
    result = subprocess.run(
        [SCRIBBLES, "run", "short.yaml", "--set", "train.strategy=ddp", "--set", "train.nodes=2",
         "--set", f"train.rdzv_endpoint={endpoint}", "--set", "train.timeout=15", "--set", "train.restarts=0"],
        cwd=project, env={**os.environ, **env}, capture_output=True, text=True, timeout=400)
    took = time.monotonic() - began
    assert result.returncode == 1, result.stdout + result.stderr
    # The MLP has dropout: on 2 machines the run first warns that its weights differ from one worker's (issue 18).
    lines = [line for line in error_lines(result.stderr) if not line.startswith("warning: strategy 'ddp' on 2 ")]
    assert len(lines) == 1 and "no worker started within train.timeout=15s" in lines[0], result.stderr
    assert f"rendezvous at {endpoint}" in lines[0] and f"scribbles join {endpoint} --nodes 2" in lines[0]
    assert took < 200, took
    runs = statuses(project / "alone.db")
    assert "RUNNING" not in runs.values() and "FAILED" in runs.values(), runs


def test_a_full_mlflow_store_is_one_failed_line(project: Path, prefect_api: str, tmp_path: Path) -> None:
    """The store's disk fills mid-run (a 64 KiB file-size limit on the run: its WAL cannot grow, EFBIG as
    ENOSPC would): one failed: line naming the store and the fix, no traceback, no temporary file left."""
    import resource

    from mlflow.tracking import MlflowClient

    store = tmp_path / "full.db"
    MlflowClient(f"sqlite:///{store}").search_experiments()  # the tables exist; only the run's writes fail
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))

    # The project is this module's: a run SIGKILLed by an earlier test may have left its checkpoint's .tmp.
    before = set(project.rglob("*.tmp"))
    result = subprocess.run([SCRIBBLES, "run", "short.yaml"], cwd=project, env=env, capture_output=True, text=True,
                            timeout=400, preexec_fn=limited)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"failed: MLFLOW_TRACKING_URI: the MLflow store sqlite:///{store} failed"), lines[0]
    assert "free space" in lines[0] and "scribbles resume" in lines[0]
    assert set(project.rglob("*.tmp")) <= before


def test_an_artifact_folder_that_cannot_be_written_is_one_line(tmp_path: Path, prefect_api: str) -> None:
    """MLflow keeps a SQLite store's artifacts in ./mlruns. A ./mlruns that cannot take them is exit 2 before any
    run (it was a traceback, exit 1, and a FAILED parent run); an experiment folder made immutable before a later
    run is one failed: line with the fix (it was four tracebacks; a folder lost mid-run gives the resume command)."""

    import shutil

    synthetic_frame(rows=60).to_csv(tmp_path / "good.csv", index=False)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({
        "experiment": "artifacts",
        "data": {"name": "file", "path": "good.csv", "target": "y", "group": "g", "time": "t"},
        "split": {"name": "kfold", "n_splits": 2}, "model": {"name": "mlp", "hidden": [4]}, "train": {"epochs": 1}}))
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}
    (tmp_path / "mlruns").write_text("not a folder")
    refused = subprocess.run([SCRIBBLES, "run", "run.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr == f"error: {tmp_path / 'mlruns'}: MLflow keeps the runs' artifacts in this folder, but it " \
                             "is a file; move it aside\n"
    assert not (tmp_path / "m.db").exists()
    (tmp_path / "mlruns").unlink()
    first = subprocess.run([SCRIBBLES, "run", "run.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    (folder,) = [p for p in (tmp_path / "mlruns").iterdir() if p.is_dir() and p.name != "0"]
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("the mid-run case needs chattr +i (root, a file system with attributes)")
    try:
        cut = subprocess.run([SCRIBBLES, "run", "run.yaml", "--force"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=300)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert cut.returncode == 1, cut.stdout + cut.stderr
    lines = error_lines(cut.stderr)
    assert len(lines) == 1 and "Traceback" not in cut.stderr, cut.stderr
    # The parent run's own folder cannot be made: it ends FAILED before it is named, so the advice is to run again.
    assert lines[0].startswith(f"failed: {folder}/") and lines[0].endswith(
        ": Operation not permitted; fix the permissions there, then run the command again (no run to finish)"), lines[0]


def test_a_store_that_fails_before_any_run_is_made_says_to_run_again(project: Path, prefect_api: str,
                                                                    tmp_path: Path) -> None:
    """A SQLite store that opens but is not one MLflow can use (tables of another schema): the run fails at
    its first write, before any run exists, so the line says to run the command again; it gave a
    `scribbles resume RUN_ID` with the placeholder left in."""
    store = tmp_path / "foreign.db"
    with contextlib.closing(sqlite3.connect(store)) as db:
        for table in ("experiments", "runs", "alembic_version"):
            db.execute(f"CREATE TABLE {table} (x INTEGER)")
        db.commit()
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    result = subprocess.run([SCRIBBLES, "run", "short.yaml"], cwd=project, env=env, capture_output=True, text=True,
                            timeout=400)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"failed: MLFLOW_TRACKING_URI: the MLflow store sqlite:///{store}")
    assert "RUN_ID" not in lines[0] and "resume" not in lines[0] and "run the command again" in lines[0], lines[0]


def test_the_prefect_server_of_serve_ends_with_its_parent() -> None:
    """`scribbles serve`'s `prefect server start` runs through the `exec` wrapper: SIGKILL of its parent
    ends it (a stand-in command here: starting a real server takes a minute on a busy machine)."""
    import sys
    import textwrap

    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-m", "scribbles.flows.prefect_server", "exec", str(os.getpid()),
                                  "/bin/sleep", "300"], start_new_session=True)
        print(child.pid, flush=True)
        time.sleep(300)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        child = psutil.Process(int(parent.stdout.readline()))  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while "sleep" not in " ".join(child.cmdline()) and time.monotonic() < deadline:
            time.sleep(0.1)  # until the wrapper has become the command
        parent.kill()
        parent.wait()
        assert gone(child, 5), "the server command outlived its parent"
    finally:
        parent.kill()


@pytest.mark.parametrize("where", ["environment", "profile"])
def test_an_absent_configured_prefect_server_is_one_error_before_any_run(project: Path, tmp_path: Path,
                                                                          where: str) -> None:
    """PREFECT_API_URL naming a server that is not there: exit 2 in seconds, one error: line, no store.

    In a Prefect profile, the URL is read only once Prefect is imported, after the temporary server was
    started ahead (its start overlaps the checks): that server is stopped unused, and says nothing."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'none.db'}"}
    if where == "environment":
        env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"
    else:
        env.pop("PREFECT_API_URL", None)
        home = tmp_path / "prefect-home"
        home.mkdir()
        (home / "profiles.toml").write_text('active = "team"\n\n[profiles.team]\n'
                                            'PREFECT_API_URL = "http://127.0.0.1:9/api"\n')
        env["PREFECT_HOME"] = str(home)
        env.pop("PREFECT_PROFILES_PATH", None)
    result = subprocess.run([SCRIBBLES, "run", "short.yaml"], cwd=project, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert error_lines(result.stderr) == [
        "error: PREFECT_API_URL: no Prefect API answers at http://127.0.0.1:9/api; start that server, or unset "
        "PREFECT_API_URL and each run starts a temporary one"], result.stderr
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("argv", [["rerun", "0123abcd"], ["resume", "0123abcd"], ["compare", "--experiment", "nope"]])
def test_read_only_verbs_on_a_store_say_one_line_and_change_nothing(tmp_path: Path, argv: list[str]) -> None:
    """A bad id or name on an existing store: exit 2, one error: line, none of MLflow's INFO lines, the
    store's bytes unchanged."""
    from mlflow.tracking import MlflowClient

    store = tmp_path / "mlflow.db"
    MlflowClient(f"sqlite:///{store}").search_experiments()
    before = store.read_bytes()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    result = subprocess.run([SCRIBBLES, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "INFO" not in result.stdout + result.stderr
    assert store.read_bytes() == before


def test_a_stop_while_the_temporary_server_starts_leaves_no_server(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C between the server process's creation and the command holding it (it landed in the start
    of the thread that warms the server): the KeyboardInterrupt is raised once the start is done, and the
    server is stopped there, its output file removed; none outlives the command."""
    import tempfile

    from scribbles.flows import prefect_server

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    made: list[subprocess.Popen[bytes]] = []

    class StoppedAtOnce(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            made.append(self)
            os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, right after the process exists

    monkeypatch.setattr(prefect_server.subprocess, "Popen", StoppedAtOnce)
    with pytest.raises(KeyboardInterrupt):
        prefect_server.Starting()
    assert len(made) == 1 and made[0].poll() is not None
    assert not list(tmp_path.iterdir())


def test_a_server_stopped_during_its_start_ends_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad input or Ctrl-C during the checks stops a server that is still importing: SIGTERM ends it then
    (uvicorn's handlers, which only ask for a shutdown after the start, come after the app's imports), so
    the command does not wait for the server's whole start or SIGKILL it."""
    import tempfile

    from scribbles.flows.prefect_server import Starting

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    server = Starting()
    time.sleep(0.5)
    assert server.process.poll() is None  # still starting
    started = time.monotonic()
    server.stop()
    assert server.process.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 3.0, "the stop waited for the server's start"
