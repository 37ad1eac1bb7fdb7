"""`scribbles doctor`: which MLflow store, Prefect server, DVC remote and study storage the project uses,
and whether each answers (every check bounded in time)."""

from __future__ import annotations

import argparse
import concurrent.futures
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import EXIT_FAILED, EXIT_OK

#: Seconds any one check may take: a server that does not answer by then is reported as not answering.
CHECK_SECONDS = 5.0


def _bounded(check: Callable[[], str], seconds: float = CHECK_SECONDS) -> tuple[bool, str]:
    """Run ``check`` in a thread for at most ``seconds``: (True, what it found) or (False, why not)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(check)
    try:
        return True, future.result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        return False, f"no answer within {seconds:.0f} s"
    except Exception as exc:
        return False, " ".join(str(exc).split())[:240] or type(exc).__name__
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _database(uri: str) -> str:
    """Connect to a SQLAlchemy database URL and run ``SELECT 1``; a short description."""
    import sqlalchemy

    args: dict[str, Any] = {"connect_timeout": int(CHECK_SECONDS)} if uri.startswith("postgresql") else {}
    engine = sqlalchemy.create_engine(uri, connect_args=args, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    finally:
        engine.dispose()
    return "the database answers"


def _mlflow(uri: str) -> str:
    if uri.startswith(("postgresql", "mysql", "mssql")):
        return _database(uri)  # MLflow's client would create and migrate the store: doctor writes nothing
    from ..stores import default_store

    return default_store(uri).health()


def _prefect(url: str) -> str:
    from ..prefect_server import healthy

    if not healthy(url.rstrip("/"), timeout=CHECK_SECONDS - 1):
        raise ConnectionError(f"no Prefect API answers at {url}/health")
    return "the Prefect API answers"


def _remote(root: Path, name: str, url: str) -> str:
    from ..data_store import team_repo

    repo = team_repo(root)
    try:
        remote = repo.cloud.get_remote(name)
        if not remote.fs.exists(remote.path):
            if remote.fs.protocol in ("local", "file"):
                raise FileNotFoundError(f"the folder {remote.path} does not exist; create it (or fix the URL)")
            return "reachable (empty: nothing pushed yet)"
        return "reachable"
    finally:
        repo.close()


def _study(uri: str) -> str:
    if "://" not in uri or uri.startswith(("file:", "journal:")):  # an Optuna journal file
        from ..study_storage import check_storage

        check_storage(uri, STUDY_NAME)
        path = Path(uri.removeprefix("journal:").removeprefix("file://").removeprefix("file:"))
        return "journal file present" if path.exists() else "a new journal file will be created"
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        return "SQLite file present" if path.exists() else "a new SQLite file will be created"
    return _database(uri)


#: What the study storage is called in doctor's messages.
STUDY_NAME = "SCRIBBLES_STUDY_STORAGE"


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print the store, servers and remote in effect; exit 1 naming each one that does not answer."""
    from scribbles.core.redact import mask_text

    from ..settings import STUDY_ENV, current
    from ..stores import default_store

    path, settings = current()
    print(f"settings: {path or 'none (no scribbles.toml here or above, SCRIBBLES_SETTINGS unset)'}")

    def origin(env: str) -> str:
        setting = settings[env]
        return f"{env} from {setting.source}" if setting.value else "default"

    rows: list[tuple[str, str, str, Callable[[], str] | None]] = []
    uri = default_store().uri
    rows.append(("mlflow", uri, origin("MLFLOW_TRACKING_URI"), lambda: _mlflow(uri)))
    prefect = os.environ.get("PREFECT_API_URL", "").strip()
    rows.append(("prefect", prefect or "a temporary server per run (for schedules: one per `scribbles serve`)",
                 origin("PREFECT_API_URL"), (lambda: _prefect(prefect)) if prefect else None))
    rows.append(_remote_row(origin("SCRIBBLES_DVC_REMOTE")))
    study = os.environ.get(STUDY_ENV, "").strip()
    rows.append(("optuna", study or "a journal file beside the MLflow store (optuna-journal.log)", origin(STUDY_ENV),
                 (lambda: _study(study)) if study else None))
    failed = []
    for name, where, source, check in rows:
        ok, found = _bounded(check) if check else (True, "nothing to check")
        print(f"{name:8} {mask_text(where)} ({source}): {'ok' if ok else 'NOT OK'}, {mask_text(found)}")
        if not ok:
            failed.append(name)
    if failed:
        print(f"failed: not answering: {', '.join(failed)}; start them or fix the settings (README: Team set-up)")
        return EXIT_FAILED
    print("all answer")
    return EXIT_OK


def _remote_row(source: str) -> tuple[str, str, str, Callable[[], str] | None]:
    """The DVC row: the default remote of the DVC project here (none outside one)."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    from ..data_store import default_remote

    try:
        root = Path(Repo.find_root(str(Path.cwd())))
    except NotDvcRepoError:
        return "dvc", "no DVC project here", source, None
    found = default_remote(root)
    if found is None:
        return "dvc", "no remote (data stay in this machine's DVC cache)", source, None
    name, url = found
    source = source if source != "default" else "DVC's config"
    return "dvc", f"remote {name} at {url}", source, lambda: _remote(root, name, url)


def add_parser(verbs: Any) -> None:
    """Register `scribbles doctor`."""
    doctor = verbs.add_parser("doctor", help="which store, server and remote this project uses; do they answer")
    doctor.set_defaults(func=cmd_doctor)
