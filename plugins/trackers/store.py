"""Getting an MLflow store ready for several runs at once.

Runs started together on a new SQLite store would all create its tables (MLflow's migrations) at the
same moment and trip over each other; the first one does it under a file lock while the others wait.
The store is switched to write-ahead logging, so that readers (the UI, ``scribbles compare``) never
block a run's writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set, else ``mlflow.db`` (SQLite) in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


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
    """Create a SQLite store's tables once, under a lock, and turn on write-ahead logging.

    A new store starts as a copy of this MLflow version's empty tables (``empty_tables``), which MLflow
    made once on this machine: its migrations took about 1.8 s of every project's first run (and of
    every test on a new store). MLflow then adds its default experiment itself, in the store's own place.
    Ctrl-C and SIGTERM are held while the tables are made (``stops_deferred``), then raised: a stop in the
    middle of MLflow's migrations left a store half made (``table ... already exists`` on every later run).
    """
    from scribbles.core import stops_deferred

    path = sqlite_path(uri)
    if path is None or uri in _READY:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(path.name + ".lock")), stops_deferred():
        from mlflow.tracking import MlflowClient

        if not path.exists():
            _copy_empty_tables(path)
        MlflowClient(uri).search_experiments(max_results=1)  # creates and migrates the tables if needed
        with contextlib.closing(sqlite3.connect(path, timeout=60)) as db:
            db.execute("PRAGMA journal_mode=WAL")
    _READY.add(uri)


def cache_folder() -> Path:
    """Where scribbles keeps what it can make again: ``$XDG_CACHE_HOME/scribbles`` (``~/.cache/scribbles``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "scribbles"


def empty_tables() -> Path | None:
    """A SQLite file holding the tables of this MLflow version's store and no rows: made by MLflow's own
    migrations the first time it is needed on this machine, then kept in ``cache_folder()``.

    None when it cannot be made (a read-only home, say): a new store is then made by MLflow in place.
    """
    import mlflow

    template = cache_folder() / f"mlflow-{mlflow.__version__}-empty-store.db"
    if template.is_file():
        return template
    try:
        import sqlalchemy
        from mlflow.store.db.utils import _initialize_tables  # MLflow's own migrations, without rows

        template.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=template.parent, prefix=template.stem, suffix=".part")
        os.close(handle)
        try:
            engine = sqlalchemy.create_engine(f"sqlite:///{name}")
            try:
                _initialize_tables(engine)
            finally:
                engine.dispose()
            os.replace(name, template)  # whole or absent: another process may be making it too
        finally:
            Path(name).unlink(missing_ok=True)
    except Exception:  # any failure only costs the migrations, made in place instead
        return None
    return template


def _copy_empty_tables(path: Path) -> None:
    """Start the new store at ``path`` as a copy of ``empty_tables()``; nothing when there is none."""
    template = empty_tables()
    if template is None:
        return
    part = path.with_name(path.name + ".part")
    try:
        shutil.copyfile(template, part)
        os.replace(part, path)
    except OSError:
        part.unlink(missing_ok=True)  # MLflow makes the tables in place instead


#: Schemes MLflow stores come in; anything else would fail inside MLflow after the run started.
KNOWN_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")
#: Seconds the reachability check of a tracking server may take (MLflow itself retries for minutes).
SERVER_CHECK_SECONDS = 3.0


def check_store(uri: str, field: str = "tracking", must_exist: bool = False) -> None:
    """BadInput (one line naming ``field``) unless MLflow could open the store at ``uri``; writes nothing.

    A SQLite store must be a readable, intact database, or a file its folder can take; a folder store a
    writable folder; a server must answer within a few seconds. ``must_exist``: reading runs back, where
    a missing store means there is nothing to read (and creating one would only leave an empty file).
    """
    from scribbles.core import BadInput

    scheme = uri.split("://", 1)[0].lower().split("+", 1)[0] if "://" in uri else ""
    if scheme not in ("", *KNOWN_SCHEMES):
        raise BadInput(f"{field}: the MLflow tracking URI {uri!r} has the unknown scheme {scheme!r}; use "
                       "sqlite:///path/mlflow.db or http://host:port (MLFLOW_TRACKING_URI)")
    if scheme in ("http", "https"):
        _check_server(uri, field)
        return
    path = sqlite_path(uri) if scheme == "sqlite" else Path(uri.removeprefix("file://")) if scheme in ("", "file") \
        else None
    if path is None:
        return  # a database server: MLflow's own connection reports it
    if scheme != "sqlite" and not must_exist and not _file_store_allowed():
        # MLflow 3 refuses to open a folder (file) store for writing unless told to: that failed after the
        # run's start, exit 1, with MLflow's message cut short.
        raise BadInput(f"{field}: {uri} is a folder store, which MLflow no longer writes to (its file store is in "
                       f"maintenance mode); {_fix(field, 'sqlite:///' + str(path.with_suffix('.db')))}, or set "
                       "MLFLOW_ALLOW_FILE_STORE=true to use the folder anyway")
    if scheme == "sqlite" and not must_exist:
        _check_artifact_folder()
    if path.exists():
        if scheme == "sqlite":
            _check_sqlite(path, field)
        elif not os.access(path, os.W_OK):
            raise BadInput(f"{field}: cannot write to the MLflow folder store {path}; fix its permissions")
        return
    if scheme == "sqlite":
        _check_no_log_left(path, field)
    if must_exist:
        if field.startswith("--") or "stores.tsv" in field:
            raise BadInput(f"{field}: there is no MLflow store at {path}; {_fix(field)}")
        raise BadInput(f"{field}: there is no MLflow store at {path} (MLFLOW_TRACKING_URI, default ./mlflow.db); "
                       "run `scribbles run CONFIG` first, or point MLFLOW_TRACKING_URI at the store")
    _check_creatable(path, field)


def _file_store_allowed() -> bool:
    """MLflow's own opt-in to folder stores (``MLFLOW_ALLOW_FILE_STORE``), read as MLflow reads it."""
    return os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("true", "1")


def request_for(uri: str, path: str) -> Any:
    """A GET of ``path`` on the server at ``uri``; its user info (urllib cannot open such a URL) becomes a
    basic Authorization header."""
    import base64
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(uri)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=netloc)).rstrip("/") + path)
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    return request


def _fix(field: str, what: str = "the store") -> str:
    """How to fix a store address that came from ``field``: a flag, a note in .scribbles/stores.tsv, or the
    environment (``MLFLOW_TRACKING_URI``, which scribbles.toml sets)."""
    if field.startswith("--"):
        return f"fix {field} (give {what})"
    if "stores.tsv" in field:
        return "remove that run's line from .scribbles/stores.tsv, or pass --tracking-uri with the store"
    if "scribbles.toml" in field:
        return f"point that entry (or MLFLOW_TRACKING_URI, which wins) at {what}"
    if field.startswith("tracking."):  # a config's own tracking_uri
        return f"point {field} at {what}"
    return f"point MLFLOW_TRACKING_URI at {what}"


def _check_server(uri: str, field: str) -> None:
    """BadInput unless an HTTP tracking server answers (any status) within SERVER_CHECK_SECONDS."""
    import urllib.error
    import urllib.request

    from scribbles.core import BadInput
    from scribbles.core.redact import mask_text

    request = request_for(uri, "/health")
    try:
        with urllib.request.urlopen(request, timeout=SERVER_CHECK_SECONDS):
            return
    except urllib.error.HTTPError:
        return  # it answered: a server is there (authentication and paths are MLflow's to report)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BadInput(f"{field}: the MLflow tracking server {mask_text(uri)} did not answer within "
                       f"{SERVER_CHECK_SECONDS:.0f} s ({reason}); start it or {_fix(field)}") from None


def _check_sqlite(path: Path, field: str) -> None:
    """BadInput unless ``path`` opens read-only as an intact SQLite database."""
    from scribbles.core import BadInput

    if not path.is_file():
        raise BadInput(f"{field}: the MLflow store {path} is not a file; {_fix(field, 'a .db file')}")
    try:
        # Read-only (mode=ro): a check must not create, lock or change the store.
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
            problems = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
    except sqlite3.Error as exc:
        raise BadInput(f"{field}: cannot open the MLflow store {path} ({exc}); restore it from a backup "
                       "or move it aside to start a new store") from None
    if problems != ["ok"]:
        found = " ".join("; ".join(problems).split())[:160]
        raise BadInput(f"{field}: the MLflow store {path} is corrupt ({found}); restore it "
                       "from a backup or move it aside to start a new store")


#: What SQLite keeps beside a database in write-ahead logging mode (stores are switched to it: ``prepare_store``).
WAL_FILES = ("-wal", "-shm")


def _check_no_log_left(path: Path, field: str) -> None:
    """BadInput when ``path`` is missing but its write-ahead log is still beside it.

    The log belongs to a store that was deleted or moved without it. SQLite replays a log it finds into the
    database opened at that path: a new store there got the old one's last writes (its runs came back as
    cached folds) or failed mid-run with MLflow's database errors.
    """
    from scribbles.core import BadInput

    left = [path.with_name(path.name + suffix) for suffix in WAL_FILES
            if path.with_name(path.name + suffix).exists()]
    if left:
        names = " and ".join(str(p) for p in left)
        raise BadInput(f"{field}: the MLflow store {path} is missing but {names} "
                       f"{'are' if len(left) > 1 else 'is'} still there (the write-ahead log of a store that was "
                       "deleted or moved without it; SQLite would replay it into a new store): move "
                       f"{'them' if len(left) > 1 else 'it'} beside the store, or delete "
                       f"{'them' if len(left) > 1 else 'it'} to start a new store")


def _check_artifact_folder() -> None:
    """BadInput unless MLflow can write a new experiment's artifacts: a SQLite store keeps them in ./mlruns
    (MLflow's default artifact root), and a folder it cannot write failed the run at its start with tracebacks."""
    from scribbles.core import BadInput

    folder = Path.cwd() / "mlruns"
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"{folder}: MLflow keeps the runs' artifacts in this folder, but it is a file; move it aside")
    probe = folder if folder.is_dir() else Path.cwd()
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise BadInput(f"{folder}: MLflow keeps the runs' artifacts here and cannot write to it "
                       f"({exc.strerror or exc}); fix the permissions of {probe}, or run from a folder you can write "
                       "to") from None


def _check_creatable(path: Path, field: str) -> None:
    """BadInput unless a file could be created at ``path`` (probed with an invisible temporary file) in a
    folder that exists: a store path with a typo in a folder name made that folder and a new, empty store,
    exit 0, so the project's runs seemed gone."""
    from scribbles.core import BadInput

    folder = path.parent
    if not folder.is_dir():
        raise BadInput(f"{field}: cannot create the MLflow store {path} (its folder {folder} does not exist); "
                       f"check the path for a typo and create the folder first (mkdir -p {folder}), or "
                       f"{_fix(field, 'a writable place')}")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise BadInput(f"{field}: cannot create the MLflow store {path} ({exc.strerror or exc} in {folder}); "
                       f"{_fix(field, 'a writable place')}") from None
