"""`scribbles resume`: a stopped parent run, made ready to finish in place."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from scribbles.core import BadInput, StoredRun

from .processes import alive
from .records import find_run
from .rerun import recorded
from .stores import open_store


@dataclass
class Resume:
    """What a resume runs: the parent run to finish, its recorded config (data pinned) and notes."""

    run_id: str
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    #: The store the run was written to: the resumed run goes on there.
    tracking_uri: str = ""


def check_stopped(run: StoredRun) -> None:
    """BadInput unless ``run`` was stopped: FAILED, KILLED, or RUNNING with its process gone."""
    record, status = run.record, run.status
    if record.get("sweep") and record.get("sweep") != "optuna":
        raise BadInput(f"RUN_ID: run {run.run_id} is a sweep; resume its unfinished trial runs one by one "
                       "(`scribbles compare` lists them); an Optuna sweep (sweep.optuna) resumes as a whole")
    if status == "FINISHED":
        raise BadInput(f"RUN_ID: run {run.run_id} already FINISHED; `scribbles rerun {run.run_id}` "
                       "runs it again as a new run")
    if status == "RUNNING":
        pid, host = record.get("pid", ""), record.get("host", "")
        if host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() and alive(int(pid)):
            raise BadInput(f"RUN_ID: run {run.run_id} is still running (process {pid} on this machine); "
                           "stop it first or let it finish")


def prepare(run_id: str, tracking_uri: str | None = None) -> Resume:
    """Read run ``run_id`` (a fold run means its parent) from the store it was written to (or
    ``tracking_uri``), check it was stopped, and pin its data version."""
    store = open_store(tracking_uri, [run_id])
    run = find_run(store, run_id)
    check_stopped(run)
    config, notes = recorded(store, run, [], "it cannot be resumed from its record; rerun it with "
                             "`scribbles rerun {run_id} --set {field}=VALUE`", "the folds trained now use this code")
    return Resume(run.run_id, config, [f"{run.status} run", *notes], store.uri)
