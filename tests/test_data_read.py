"""Data read right: timestamps across a daylight-saving switch, group folds never empty, content-hashed status."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import make_dvc_project, run_cli
from scribbles.core import Dataset
from scribbles.core.data import read_times
from scribbles.plugins.data import FileSource
from scribbles.plugins.splitters.grouped import StratifiedGroupKFold
from sklearn.model_selection import StratifiedGroupKFold as SklearnStratifiedGroupKFold


def _dataset(frame: pd.DataFrame) -> Dataset:
    return Dataset(frame=frame, target="y", features=["x"], group="g", time=None, version="v", kind="tabular",
                   shape=(1,), source="test", rev=None)


def _valid_sets(folds: list[np.ndarray]) -> list[list[int]]:
    return [sorted(map(int, valid)) for valid in folds]


def test_mixed_utc_offsets_are_instants(tmp_path: Path) -> None:
    """+01:00 then +02:00 at the spring switch: read as increasing UTC instants, not refused."""
    stamps = ["2024-03-31T00:30:00+01:00", "2024-03-31T01:30:00+01:00", "2024-03-31T03:30:00+02:00",
              "2024-03-31T04:30:00+02:00"]
    path = tmp_path / "dst.csv"
    pd.DataFrame({"t": stamps, "x": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}).to_csv(path, index=False)
    dataset = FileSource(FileSource.Params(path=str(path), target="y", time="t")).load()
    times = read_times(dataset)
    assert times.is_datetime
    hours = np.diff(times.values) / 3_600_000_000_000
    assert hours.tolist() == [1.0, 1.0, 1.0]  # 01:30+01:00 and 03:30+02:00 are one hour apart


def test_stratified_group_kfold_gives_one_group_per_fold_where_sklearn_leaves_one_empty() -> None:
    """The issue's case: 4 groups, 4 folds. scikit-learn leaves a fold empty; every fold gets one group."""
    frame = pd.DataFrame({"x": np.arange(9.0), "g": [0, 0, 0, 0, 1, 2, 2, 3, 3], "y": [1, 1, 1, 1, 0, 1, 1, 0, 0]})
    with pytest.warns(UserWarning):
        sklearn = [valid for _, valid in SklearnStratifiedGroupKFold(4).split(frame[["x"]], frame.y, frame.g)]
    assert any(len(valid) == 0 for valid in sklearn)  # the defect is there to repair
    with pytest.warns(UserWarning):
        folds = list(StratifiedGroupKFold(StratifiedGroupKFold.Params(n_splits=4)).split(_dataset(frame)))
    groups = [sorted(set(frame.g.iloc[fold.valid])) for fold in folds]
    assert sorted(g for fold in groups for g in fold) == [0, 1, 2, 3]
    assert all(len(g) == 1 for g in groups), groups


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_stratified_group_kfold_keeps_sklearn_folds_wherever_they_are_valid() -> None:
    """Every problem of 4 groups of 1-4 rows, one class each, 4 folds (scikit-learn's empty folds are
    among these): the folds are scikit-learn's wherever it has no empty fold, and never empty."""
    repaired = 0
    for k in (4,):
        for sizes in itertools.product(range(1, 5), repeat=k):
            for labels in itertools.product((0, 1), repeat=k):
                groups, y = np.repeat(np.arange(k), sizes), np.repeat(labels, sizes)
                if len(set(labels)) < 2 or np.bincount(y).max() < k:
                    continue  # one class, or every class smaller than k: both refuse
                frame = pd.DataFrame({"x": np.zeros(len(y)), "g": groups, "y": y})
                theirs = [v for _, v in SklearnStratifiedGroupKFold(k).split(frame[["x"]], y, groups)]
                ours = [fold.valid for fold in StratifiedGroupKFold(StratifiedGroupKFold.Params(n_splits=k)).split(
                    _dataset(frame))]
                assert all(len(valid) for valid in ours), (sizes, labels)
                if all(len(valid) for valid in theirs):
                    assert _valid_sets(ours) == _valid_sets(theirs), (sizes, labels)
                else:
                    repaired += 1
    assert repaired > 0  # the enumeration does reach the case being repaired


def test_data_status_compares_content_and_its_fix_restores_the_file(tmp_path: Path, activity_small) -> None:
    """One byte changed in place, size and mtime kept: `data status` sees it; the fix it prints restores it."""
    root = make_dvc_project(tmp_path / "proj", {"activity.csv": activity_small.iloc[:40]})
    assert run_cli("data", "status", cwd=root).returncode == 0
    path = root / "data" / "activity.csv"
    original = path.read_bytes()
    stat = path.stat()
    with open(path, "r+b") as handle:  # in place: same inode, same size
        offset = original.index(b"\n") + 1
        handle.seek(offset)
        handle.write(b"9" if original[offset:offset + 1] != b"9" else b"8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.read_bytes() != original

    changed = run_cli("data", "status", cwd=root)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert "data/activity.csv: modified" in changed.stdout, changed.stdout
    fix = "dvc checkout --relink --force data.dvc"
    assert fix in changed.stdout
    subprocess.run([sys.executable, "-m", "dvc", *fix.split()[1:]], cwd=root, check=True, capture_output=True)
    assert path.read_bytes() == original
    assert run_cli("data", "status", cwd=root).returncode == 0
