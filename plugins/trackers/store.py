"""Getting an MLflow store ready for several runs at once.

Runs started together on a new SQLite store would all create its tables (MLflow's migrations) at the
same moment and trip over each other; the first one does it under a file lock while the others wait.
The store is switched to write-ahead logging, so that readers (the UI, ``scribbles compare``) never
block a run's writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
from collections.abc import Iterator
from pathlib import Path

#: Stores this process already made ready.
_READY: set[str] = set()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI; None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created when missing), held for the block."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_store(uri: str) -> None:
    """Create a SQLite store's tables once, under a lock, and turn on write-ahead logging."""
    path = sqlite_path(uri)
    if path is None or uri in _READY:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(path.name + ".lock")):
        from mlflow.tracking import MlflowClient

        MlflowClient(uri).search_experiments(max_results=1)  # creates and migrates the tables if needed
        with contextlib.closing(sqlite3.connect(path, timeout=60)) as db:
            db.execute("PRAGMA journal_mode=WAL")
    _READY.add(uri)
