"""Failures of the machine, as libraries report them, turned into one ScribblesError line each.

A full disk or a broken store surfaces deep inside MLflow (through SQLAlchemy and sqlite3), the OS
or Prefect's client, as a chain of tracebacks ending in "please report it". None of those is a bug
to report: each becomes one line naming what failed and the fix. Anything else is left alone.
"""

from __future__ import annotations

import errno
import os
import sqlite3

from scribbles.core import ScribblesError

from .interrupts import causes, interruption

#: OS errors that mean the machine, not scribbles: full, over quota, too large, read-only, failing disk.
MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("(Background")]
    return (lines[0] if lines else type(exc).__name__)[:200]


def as_failure(exc: BaseException) -> ScribblesError | None:
    """The one-line ScribblesError for ``exc`` when it is a failure of the machine or a store; else None."""
    if isinstance(exc, ScribblesError):
        return None
    if interruption(exc) is not None:
        return None  # a store error that a stop caused (Ctrl-C inside an MLflow call) is the stop, not a failure
    for cause in causes(exc):
        module = type(cause).__module__
        if isinstance(cause, sqlite3.Error) or module.startswith(("mlflow", "sqlalchemy")):
            from .settings import named
            from .stores import default_store

            field = named("MLFLOW_TRACKING_URI")
            return ScribblesError(
                f"{field}: the MLflow store {default_store().shown} failed ({_first_line(cause)}); "
                "check the free space and permissions there, then `scribbles resume RUN_ID` finishes the run")
        if type(cause).__name__ == "PrefectHTTPStatusError":
            return ScribblesError(
                f"the Prefect API failed ({_first_line(cause)[:160]}); see .scribbles/prefect-server.log for a "
                "temporary server, or the server's own log")
        if isinstance(cause, OSError) and cause.errno in MACHINE_ERRNOS:
            where = cause.filename or "a file"
            return ScribblesError(f"{where}: {cause.strerror or os.strerror(cause.errno or 0)}; free space or fix "
                                  "the disk there, then `scribbles resume RUN_ID` finishes the run")
        if isinstance(cause, PermissionError):  # a folder made read-only (or immutable) under the run
            where = cause.filename or "a file"
            return ScribblesError(f"{where}: {cause.strerror or 'permission denied'}; fix the permissions there, "
                                  "then `scribbles resume RUN_ID` finishes the run")
    return None
