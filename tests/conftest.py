"""Shared fixtures: one Prefect server per test session, temporary DVC projects, small data."""

from __future__ import annotations

import os
import shutil
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


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One real Prefect server (Prefect's test harness) for the whole session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


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
