"""A throwaway team set-up for tests and benchmarks: PostgreSQL, an MLflow server and a Prefect server.

``postgres(folder)`` starts a PostgreSQL instance of its own in ``folder`` (``initdb`` and ``pg_ctl``,
as pytest-postgresql does) on a free port of 127.0.0.1; ``mlflow_server`` and ``prefect_server`` run
the tools' own servers on it, as README's "Team set-up" does. Everything stops when its block ends.
PostgreSQL refuses to run as root, so as root the instance runs as the user ``nobody``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scribbles.flows.prefect_server import free_port, local_server, stop

#: Where Debian puts the server binaries; newest version first.
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
#: The database user of the throwaway instance (trust authentication on 127.0.0.1 only).
PG_USER = "postgres"


class Unavailable(RuntimeError):
    """PostgreSQL cannot start on this machine (not installed, or no user to run it as)."""


def pg_bin() -> Path:
    """The folder with ``initdb`` and ``pg_ctl``: on PATH, else Debian's newest; Unavailable when missing."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    found = sorted(glob.glob(PG_BIN_GLOB), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                   else 0, reverse=True)
    for folder in found:
        if (Path(folder) / "initdb").exists():
            return Path(folder)
    raise Unavailable(f"PostgreSQL's initdb is not installed (looked on PATH and in {PG_BIN_GLOB})")


@dataclass(frozen=True)
class Postgres:
    """A running instance: ``url(db)`` is a SQLAlchemy/MLflow URL of database ``db`` on it."""

    port: int

    def url(self, database: str, driver: str = "") -> str:
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{PG_USER}@127.0.0.1:{self.port}/{database}"


def _as_owner(command: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *command] if owner else command


@contextlib.contextmanager
def postgres(folder: Path, databases: tuple[str, ...] = ("mlflow", "prefect", "optuna")) -> Iterator[Postgres]:
    """A PostgreSQL instance in ``folder`` on a free 127.0.0.1 port, with ``databases`` created; stopped after.

    Raises Unavailable when it cannot start (tests skip with that reason).
    """
    binaries = pg_bin()
    owner = None
    if os.geteuid() == 0:  # postgres will not run as root
        if shutil.which("runuser") is None:
            raise Unavailable("running as root without runuser: cannot start PostgreSQL as another user")
        owner = "nobody"
    folder.mkdir(parents=True, exist_ok=True)
    # As root, the instance lives in a folder of its own under the system's temp dir: pytest's tmp_path sits
    # in a folder only root may enter (0700), where the user ``nobody`` could not reach its data directory.
    home = Path(tempfile.mkdtemp(prefix="scribbles-pg-")) if owner else folder
    try:
        yield from _run_postgres(binaries, home, owner, databases)
    finally:
        if owner:
            with contextlib.suppress(OSError):
                shutil.copy(home / "postgres.log", folder / "postgres.log")
            shutil.rmtree(home, ignore_errors=True)


def _run_postgres(binaries: Path, home: Path, owner: str | None, databases: tuple[str, ...]) -> Iterator[Postgres]:
    """initdb, pg_ctl start, the databases created; yields the instance, stops it after."""
    data, sockets = home / "pgdata", home / "pgsock"
    sockets.mkdir(exist_ok=True)
    if owner:
        for path in (home, sockets):
            shutil.chown(path, user=owner)
    log = home / "postgres.log"
    initdb = subprocess.run(_as_owner([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", PG_USER,
                                       "-E", "UTF8", "--no-sync", "--locale=C"], owner),
                            capture_output=True, text=True)
    if initdb.returncode != 0:
        raise Unavailable(f"initdb failed: {(initdb.stderr or initdb.stdout).strip()[-300:]}")
    port = free_port()
    # fsync off and a short checkpoint: a throwaway instance for tests, not a store to keep.
    options = f"-h 127.0.0.1 -p {port} -k {sockets} -F -c max_connections=200 -c shared_buffers=32MB"
    if owner:
        Path(log).touch()
        shutil.chown(log, user=owner)
    started = subprocess.run(_as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                                        "-w", "-t", "60", "start"], owner), capture_output=True, text=True)
    if started.returncode != 0:
        raise Unavailable(f"pg_ctl start failed: {started.stderr.strip()[-200:]}; {log.read_text()[-300:]}")
    try:
        instance = Postgres(port)
        import psycopg2

        connection = psycopg2.connect(instance.url("postgres"), connect_timeout=10)
        connection.autocommit = True
        with connection.cursor() as cursor:
            for name in databases:
                cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()
        yield instance
    finally:
        subprocess.run(_as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], owner),
                       capture_output=True)

def _wait(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Return once ``url`` answers 200; RuntimeError naming the log when the server exits or stays silent."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}: {log.read_text()[-800:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no answer at {url} within {timeout:.0f} s: {log.read_text()[-800:]}")
        time.sleep(0.3)


@contextlib.contextmanager
def mlflow_server(backend: str, artifacts: Path, log: Path, workers: int = 1,
                  timeout: float = 150.0) -> Iterator[str]:
    """``mlflow server`` on ``backend`` proxying artifacts to ``artifacts``, on a free port; yields its URL."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
               "--artifacts-destination", artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers)]
    # No GenAI job consumers (MLflow 3 starts seven huey processes for them): scribbles runs no such jobs.
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(f"{url}/health", process, log, timeout)
        yield url
    finally:
        stop(process, grace=10.0)


@contextlib.contextmanager
def prefect_server(database: str, home: Path, log: Path, timeout: float = 150.0) -> Iterator[str]:
    """``prefect server start`` on the PostgreSQL ``database`` (an asyncpg URL); yields its API URL."""
    env = {"PREFECT_API_DATABASE_CONNECTION_URL": database, "PREFECT_HOME": str(home),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
    with local_server(port=free_port(), log=log, timeout=timeout, env=env) as url:
        yield url


def metric_counts(client: Any, parent: Any) -> tuple[int, int]:
    """(metric values a run wrote, as its folds' fold_result.json record them, values the store gives back).

    Written: per fold, its final metrics and every epoch's values; on the parent a mean and a std of each
    fold metric. Read back: the length of every metric's history, parent and folds.
    """
    import json

    written = read = 0
    folds = client.search_runs([parent.info.experiment_id],
                               f"tags.\"mlflow.parentRunId\" = '{parent.info.run_id}'")
    with tempfile.TemporaryDirectory() as tmp:
        keys: set[str] = set()
        for fold in folds:
            result = json.loads(Path(client.download_artifacts(fold.info.run_id, "fold_result.json", tmp)).read_text())
            written += len(result["metrics"]) + sum(len(epoch) for epoch in result["history"])
            keys |= set(result["metrics"])
            read += sum(len(client.get_metric_history(fold.info.run_id, key)) for key in fold.data.metrics)
        written += 2 * len(keys)
    read += sum(len(client.get_metric_history(parent.info.run_id, key)) for key in parent.data.metrics)
    return written, read
