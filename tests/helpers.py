"""Helpers shared by the tests: the installed CLI, git, and temporary DVC projects."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIBBLES = str(Path(sys.executable).with_name("scribbles"))


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the installed ``scribbles`` command in ``cwd`` and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([SCRIBBLES, *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def git(*args: str, cwd: Path) -> str:
    """Run git in ``cwd``; fail the test on error."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_dvc_project(root: Path, files: dict[str, object]) -> Path:
    """A git + DVC repo in ``root`` whose data/ holds ``files`` (name -> DataFrame), tracked by data.dvc."""
    from scribbles.flows.demo_data import write_csv

    root.mkdir(parents=True, exist_ok=True)
    git("init", "-q", cwd=root)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], cwd=root, check=True)
    (root / "data").mkdir()
    for name, frame in files.items():
        write_csv(frame, root / "data" / name)  # type: ignore[arg-type]
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "data"], cwd=root, check=True)
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "data", cwd=root)
    return root


def work_in(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``root`` the working directory with its own SQLite MLflow store (undone after the test)."""
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    return root


def fake_dist(site: Path, name: str, source: str, version: str = "0.1.0") -> None:
    """A distribution in ``site`` with a scribbles.plugins entry point, laid out as pip installs one."""
    module = name.replace("-", "_")
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[scribbles.plugins]\n{module} = {module}\n")
