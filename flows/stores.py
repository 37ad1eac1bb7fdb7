"""Which run store a verb reads: the one named, the one a run was written to, or the project's default.

A run's tracker may write to a store of the config's own (``tracking: [{name: mlflow, tracking_uri: ...}]``).
``scribbles run`` notes each run's store in ``.scribbles/stores.tsv`` (run id, store address), so that
``resume``, ``rerun``, ``compare`` and ``promote`` read a run where it was written without being told;
``--tracking-uri`` overrides. An address with a password is not noted (a file in the project is no place
for it): such a run needs ``--tracking-uri``, or the address in ``MLFLOW_TRACKING_URI``/``scribbles.toml``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from scribbles.core import BadInput, Plan, RunStore, default_registry

#: The tracker that reads runs back when a verb has no config: the built-in MLflow one.
DEFAULT_TRACKER = "mlflow"


def index_path() -> Path:
    """The project's note of where each run was written."""
    return Path.cwd() / ".scribbles" / "stores.tsv"


def store_of(plan: Plan) -> RunStore | None:
    """The store the plan's first tracker that keeps one writes to; None when no tracker keeps runs."""
    for tracker in plan.trackers:
        store = tracker.store()
        if store is not None:
            return store
    return None


def _has_password(uri: str) -> bool:
    return "://" in uri and urlsplit(uri).password is not None


def remember(run_id: str, uri: str) -> None:
    """Note that run ``run_id`` was written to the store ``uri`` (not when the address holds a password)."""
    if not run_id or _has_password(uri) or "\t" in uri or "\n" in uri or written_to(run_id) == uri:
        return
    path = index_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # One short line appended with O_APPEND: concurrent runs never interleave or lose a line.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{run_id}\t{uri}\n".encode())
    finally:
        os.close(fd)


def written_to(run_id: str) -> str | None:
    """The store run ``run_id`` was written to, as noted by ``remember``; None when not noted."""
    path = index_path()
    if not run_id or not path.is_file():
        return None
    found = None
    for line in path.read_text(errors="replace").splitlines():
        fields = line.split("\t")
        # Anything else is not a line remember wrote. A prefix matches too: tables show 8 characters of an id.
        if len(fields) == 2 and fields[0].startswith(run_id) and fields[1]:
            found = fields[1]
    return found


def noted_stores() -> list[str]:
    """Every store noted in the project's ``stores.tsv``, most recent first."""
    path = index_path()
    if not path.is_file():
        return []
    found: dict[str, None] = {}
    for line in reversed(path.read_text(errors="replace").splitlines()):
        fields = line.split("\t")
        if len(fields) == 2 and fields[0] and fields[1]:
            found.setdefault(fields[1])
    return list(found)


def same_place(first: str, second: str) -> bool:
    """Whether two tracking URIs name one store: SQLite and folder stores by their resolved file path
    (``sqlite:///mlflow.db`` and ``sqlite:////abs/path/mlflow.db`` can be one file), servers by URL."""
    def place(uri: str) -> str:
        scheme, sep, rest = uri.partition("://")
        if not sep:
            return str(Path(uri).resolve())
        if scheme.lower().split("+")[0] == "sqlite" and rest.startswith("/"):
            return str(Path(rest[1:] or ".").resolve())
        if scheme.lower() == "file":
            return str(Path(rest).resolve())
        return uri.rstrip("/")

    return place(first) == place(second)


def default_store(uri: str | None = None) -> RunStore:
    """The default tracker's store at ``uri`` (None: ``MLFLOW_TRACKING_URI``, else ./mlflow.db); unchecked."""
    tracker = default_registry().create("tracker", DEFAULT_TRACKER, field="tracking", tracking_uri=uri)
    store = tracker.store()
    if store is None:
        raise BadInput(f"tracking: the {DEFAULT_TRACKER} tracker keeps no run store to read back")
    return store


def open_store(uri: str | None = None, run_ids: Iterable[str] = (), must_exist: bool = True,
               field: str | None = None) -> RunStore:
    """The store a verb reads: ``uri`` (``--tracking-uri``), else the one the first of ``run_ids`` was written
    to, else the default (``MLFLOW_TRACKING_URI``, ``scribbles.toml``, ./mlflow.db) - or, when the default
    does not hold that run (a fold or trial run of a config's own store), the noted store that does.

    BadInput (one line naming ``field``) when it cannot be opened, or (``must_exist``) when there is no
    store there.
    """
    ids = list(run_ids)
    if uri is not None:
        store = default_store(uri)
        store.check(must_exist=must_exist, field=field or "--tracking-uri")
        return store
    for run_id in ids:
        noted = written_to(run_id)
        if noted is not None:
            store = default_store(noted)
            store.check(must_exist=must_exist, field=field or f"the store run {run_id} was written to "
                        "(.scribbles/stores.tsv; --tracking-uri overrides)")
            return store
    store = default_store()
    if ids and not _holds(store, ids[0]):
        for noted in noted_stores():
            other = default_store(noted)
            if _holds(other, ids[0]):
                return other
    store.check(must_exist=must_exist, field=field or "tracking")
    return store


def _holds(store: RunStore, run_id: str) -> bool:
    """True when ``store`` can be opened and holds run ``run_id`` (a check that fails says False)."""
    try:
        store.check(must_exist=True)
        return store.get(run_id) is not None
    except Exception:  # a noted store gone or broken: not this one
        return False
