"""Shared fixtures: one Prefect server per test session, temporary DVC projects, small data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests see only the built-ins unless a test installs a plugin itself.
os.environ["SCRIBBLES_DISABLE_PLUGIN_AUTOLOAD"] = "1"
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
for key, value in {
    "GIT_AUTHOR_NAME": "scribbles-tests",
    "GIT_AUTHOR_EMAIL": "tests@scribbles.invalid",
    "GIT_COMMITTER_NAME": "scribbles-tests",
    "GIT_COMMITTER_EMAIL": "tests@scribbles.invalid",
}.items():
    os.environ.setdefault(key, value)

REPO = Path(__file__).resolve().parents[1]
SCRIBBLES = str(Path(sys.executable).with_name("scribbles"))


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One real Prefect server (Prefect's test harness) for the whole session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


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


@pytest.fixture(scope="session")
def activity_small():
    """A small slice of the activity demo set: every subject, few windows, for quick flows."""
    from scribbles.flows.demo_data import build_activity

    frame = build_activity()
    # Every 6th row keeps all subjects, activities and the 60-day span.
    return frame.iloc[::6].reset_index(drop=True)


@pytest.fixture(scope="session")
def digits_small():
    """The first 400 digits."""
    from scribbles.flows.demo_data import build_digits

    return build_digits().iloc[:400].reset_index(drop=True)


@pytest.fixture
def copy_configs(tmp_path: Path) -> Path:
    """The repository's configs/ copied into a temporary project."""
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    return tmp_path / "configs"
