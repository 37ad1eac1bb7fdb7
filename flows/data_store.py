"""``scribbles data build | status``: the demo datasets, rebuilt offline and checked against data.dvc.

A fresh clone has no DVC remote to pull from, so ``build`` regenerates data/ byte for byte and puts
it into DVC's cache (``dvc commit``, data.dvc unchanged): afterwards ``dvc status`` is clean.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from scribbles.core import BadInput, ScribblesError

from .demo_data import DATASETS, write_csv

DATA_DIR = "data"
POINTER = "data.dvc"
#: What scribbles' own data.dvc records for the demo data/ (``test_data_build_reproduces_committed_data_dvc``
#: checks it): a data.dvc that records anything else tracks someone's own data, which build must not touch.
DEMO_MD5 = "f9c68c472378992969a4002fa1d11d8c.dir"


@contextlib.contextmanager
def _quiet() -> Any:
    # DVC prints progress bars and hints to stdout/stderr; the command prints its own summary.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def project_root(start: Path) -> Path:
    """The DVC project ``start`` is in (DVC looks upward for ``.dvc/``); BadInput when there is none."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        return Path(Repo.find_root(str(start)))
    except NotDvcRepoError:
        raise BadInput(f"{start} is not in a DVC repository; run `dvc init` there first") from None


def _repo(root: Path) -> Any:
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        return Repo(str(root))
    except NotDvcRepoError:
        raise BadInput(f"{root} is not a DVC repository; run `dvc init` there first") from None


def build(root: Path, force: bool = False) -> list[str]:
    """Write the missing demo datasets (all with ``force``) and record data/ in DVC's cache.

    Returns the names written. With data.dvc present it is left unchanged (``dvc commit``); without
    it, ``dvc add data`` creates it.
    """
    data_dir = root / DATA_DIR
    pointer = root / POINTER
    repo = _repo(root)
    _refuse_foreign_data(pointer, data_dir)
    written = _write(data_dir, force)
    with _quiet():
        if not pointer.exists():
            repo.add([str(data_dir)])
            return written
        differences = [line for line in describe_status(repo.status(targets=[str(pointer)]))
                       if not line.endswith("not in cache")]
        if differences:
            # Committing now would rewrite data.dvc and silently change the data version.
            raise ScribblesError(
                "the data in data/ differ from what data.dvc records: " + "; ".join(differences)
                + ". Restore the recorded files with `scribbles data build --force` (demo data) or "
                "`dvc checkout`; to record the new files instead, run `dvc add data` and commit data.dvc"
            )
        repo.commit(str(pointer), force=True)
    return written


def _refuse_foreign_data(pointer: Path, data_dir: Path) -> None:
    """BadInput when data/ or data.dvc hold anything but scribbles' demo data: build would overwrite it."""
    targets = ", ".join(f"{DATA_DIR}/{name}" for name in DATASETS)
    fix = ("`scribbles data build` makes scribbles' demo data, in a clone of scribbles only; track your own "
           "data with `dvc add` and point data.path at it")
    if pointer.is_file():
        import yaml

        try:
            outs = (yaml.safe_load(pointer.read_text()) or {}).get("outs") or [{}]
            recorded = str(outs[0].get("md5", ""))
        except (yaml.YAMLError, OSError, AttributeError, IndexError):
            recorded = "(unreadable)"
        if recorded != DEMO_MD5:
            raise BadInput(f"{pointer} records other data than scribbles' demo (md5 {recorded or 'none'}); "
                           f"building would overwrite {targets}. {fix}")
    if data_dir.is_dir():
        foreign = sorted(p.name for p in data_dir.iterdir() if p.name not in DATASETS)
        if not pointer.is_file():  # nothing records what is there: even a file named digits.csv may be theirs
            foreign = sorted(p.name for p in data_dir.iterdir())
        if foreign:
            raise BadInput(f"{data_dir} holds files that are not scribbles' demo data ({', '.join(foreign[:5])}); "
                           f"building would write {targets} among them. {fix}")


def _write(data_dir: Path, force: bool) -> list[str]:
    """Write the missing demo datasets (all with ``force``); on a failure, remove what this call added."""
    created_dir = not data_dir.exists()
    data_dir.mkdir(exist_ok=True)
    written: list[str] = []
    added: list[Path] = []
    try:
        for name, builder in DATASETS.items():
            path = data_dir / name
            if force or not path.exists():
                existed = path.exists()
                write_csv(builder(), path)  # atomic per file: a temporary file, then os.replace
                written.append(name)
                if not existed:
                    added.append(path)
    except BaseException:
        for path in added:  # never leave a half-built data/ behind
            path.unlink(missing_ok=True)
        if created_dir:
            with contextlib.suppress(OSError):
                data_dir.rmdir()
        raise
    return written


def status(root: Path) -> dict[str, Any]:
    """DVC's status of data.dvc, plus content checks: an empty mapping when data/ matches it and is cached.

    DVC trusts a file whose size, mtime and inode are unchanged; a byte rewritten in place keeps all
    three, so every tracked file's md5 is also compared with the one data.dvc records (what `run` checks).
    """
    if not (root / POINTER).exists():
        raise BadInput(f"{root / POINTER} does not exist; run `scribbles data build` to create it")
    repo = _repo(root)
    with _quiet():
        changes = repo.status(targets=[str(root / POINTER)])
    modified = content_changes(root, repo)
    if modified and not changes:
        changes = {POINTER: [{"changed outs": dict.fromkeys(modified, "modified (content differs from its md5)")}]}
    return changes


def content_changes(root: Path, repo: Any) -> list[str]:
    """Tracked files (relative to ``root``) whose bytes' md5 differs from what data.dvc records."""
    import hashlib
    import json

    import yaml

    pointer = yaml.safe_load((root / POINTER).read_text()) or {}
    changed = []
    for out in pointer.get("outs", []):
        oid, base = str(out.get("md5", "")), root / str(out.get("path", ""))
        if oid.endswith(".dir"):
            listing = Path(repo.cache.local.oid_to_path(oid))
            if not listing.is_file():
                continue  # not in the cache: DVC's own status reports that
            entries = [(base / e["relpath"], e["md5"]) for e in json.loads(listing.read_text())]
        else:
            entries = [(base, oid)]
        for path, md5 in entries:
            if path.is_file() and hashlib.md5(path.read_bytes()).hexdigest() != md5:
                changed.append(str(path.relative_to(root)))
    return changed


def describe_status(changes: dict[str, Any]) -> list[str]:
    """One line per difference, e.g. ``data/activity.csv: modified``."""
    lines = []
    for stage, items in changes.items():
        for item in items:
            if isinstance(item, dict):
                for kind, entries in item.items():
                    entries = entries if isinstance(entries, dict) else {str(entries): ""}
                    for path, state in entries.items():
                        lines.append(f"{path}: {state or kind}")
            else:
                lines.append(f"{stage}: {item}")
    return lines


def team_repo(root: Path) -> Any:
    """The DVC repo at ``root`` with the team remote of ``SCRIBBLES_DVC_REMOTE`` (scribbles.toml) as default."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo
    from scribbles.core.data import dvc_remote_config

    try:
        return Repo(str(root), config=dvc_remote_config())
    except NotDvcRepoError:
        raise BadInput(f"{root} is not a DVC repository; run `dvc init` there first") from None


def default_remote(root: Path) -> tuple[str, str] | None:
    """``(name, url)`` of the remote push and pull would use; None when there is none."""
    repo = team_repo(root)
    try:
        name = repo.config["core"].get("remote")
        if not name:
            return None
        remote = repo.config["remote"].get(name) or {}
        return str(name), str(remote.get("url", ""))
    finally:
        repo.close()


def transfer(root: Path, direction: str) -> str:
    """``dvc push`` or ``dvc pull`` of data.dvc to the team remote (DVC's own API); a one-line summary.

    BadInput when no remote is configured; ScribblesError when the remote cannot be reached or lacks data.
    """
    from dvc.config import NoRemoteError
    from dvc.exceptions import DvcException

    pointer = root / POINTER
    if not pointer.exists():
        raise BadInput(f"{pointer} does not exist; track the data with `dvc add data` (or `scribbles data build`)")
    found = default_remote(root)
    if found is None:
        raise BadInput("no DVC remote: set dvc.remote in scribbles.toml (or SCRIBBLES_DVC_REMOTE), or add one with "
                       "`dvc remote add -d team /shared/folder` and commit .dvc/config")
    name, url = found
    repo = team_repo(root)
    try:
        with _quiet():
            if direction == "push":
                count = repo.push(targets=[str(pointer)])
                return f"pushed {count} file(s) to DVC remote {name} ({url})"
            stats = repo.pull(targets=[str(pointer)], force=True)
        fetched = (stats.get("stats") or {}).get("fetched", 0) if isinstance(stats, dict) else stats
        return f"pulled {fetched} file(s) from DVC remote {name} ({url}); data/ matches data.dvc"
    except NoRemoteError as exc:
        raise BadInput(f"DVC remote: {exc}") from None
    except DvcException as exc:
        raise ScribblesError(f"dvc {direction} to remote {name} ({url}) failed: {' '.join(str(exc).split())[:300]}"
                             ) from None
    finally:
        repo.close()
