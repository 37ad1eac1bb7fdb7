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


@contextlib.contextmanager
def _quiet() -> Any:
    # DVC prints progress bars and hints to stdout/stderr; the command prints its own summary.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


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
    data_dir.mkdir(exist_ok=True)
    written = []
    for name, builder in DATASETS.items():
        path = data_dir / name
        if force or not path.exists():
            write_csv(builder(), path)
            written.append(name)
    repo = _repo(root)
    pointer = root / POINTER
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


def status(root: Path) -> dict[str, Any]:
    """DVC's status of data.dvc: an empty mapping when data/ matches it and is in the cache."""
    if not (root / POINTER).exists():
        raise BadInput(f"{root / POINTER} does not exist; run `scribbles data build` to create it")
    repo = _repo(root)
    with _quiet():
        return repo.status(targets=[str(root / POINTER)])


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
