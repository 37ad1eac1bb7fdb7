"""Team settings: ``scribbles.toml`` at the project root points every verb at the team's servers.

The file is read with the standard library (``tomllib``) and each entry becomes the environment
variable the tool itself reads, unless that variable is already set (the environment wins)::

    [mlflow]
    tracking_uri = "http://mlflow.team.lan:5000"           # MLFLOW_TRACKING_URI
    [prefect]
    api_url = "http://prefect.team.lan:4200/api"           # PREFECT_API_URL
    [dvc]
    remote = "/mnt/shared/scribbles-dvc"                   # SCRIBBLES_DVC_REMOTE: a URL, or a remote's name
    [optuna]
    storage = "postgresql://scribbles@db.team.lan/optuna"  # SCRIBBLES_STUDY_STORAGE

Because the variables are set in the command's own process before MLflow, Prefect or DVC are
imported, every verb (and the worker processes a run starts) sees the same servers. The file is
found in the working directory or the nearest folder above it, stopping at the project root (the
first folder with ``.git`` or ``.dvc``); ``SCRIBBLES_SETTINGS`` names a file explicitly.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from scribbles.core import BadInput

FILE_NAME = "scribbles.toml"
SETTINGS_ENV = "SCRIBBLES_SETTINGS"
REMOTE_ENV = "SCRIBBLES_DVC_REMOTE"
STUDY_ENV = "SCRIBBLES_STUDY_STORAGE"

#: (section, key) in scribbles.toml -> the environment variable it sets.
KEYS: dict[tuple[str, str], str] = {
    ("mlflow", "tracking_uri"): "MLFLOW_TRACKING_URI",
    ("prefect", "api_url"): "PREFECT_API_URL",
    ("dvc", "remote"): REMOTE_ENV,
    ("optuna", "storage"): STUDY_ENV,
}


@dataclass(frozen=True)
class Setting:
    """One team setting: its environment variable, value, and where the value came from."""

    env: str
    value: str | None
    source: str  # "environment", the settings file's path, or "default"


def find_settings(start: Path | None = None) -> Path | None:
    """The settings file in effect: ``SCRIBBLES_SETTINGS``, else ``scribbles.toml`` from ``start`` upward.

    The search stops at the project root (a folder holding ``.git`` or ``.dvc``). BadInput when
    ``SCRIBBLES_SETTINGS`` names a file that does not exist, or a ``scribbles.toml`` found is not a file.
    """
    named = os.environ.get(SETTINGS_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise BadInput(f"{SETTINGS_ENV}: {path} is not a file; point it at a scribbles.toml or unset it")
        return path.resolve()
    folder = (start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / FILE_NAME).is_file():
            return candidate / FILE_NAME
        if (candidate / FILE_NAME).exists():  # a folder of that name: the user meant settings here
            raise BadInput(f"{candidate / FILE_NAME} is not a file; the team settings are a TOML file of that name")
        if (candidate / ".git").exists() or (candidate / ".dvc").is_dir():
            return None
    return None


def read_settings(path: Path) -> dict[str, str]:
    """``{environment variable: value}`` from the settings file at ``path``; BadInput naming a bad entry.

    A relative local path as the DVC remote is taken from the file's folder (as DVC does in its config).
    """
    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{path}: not valid TOML ({exc}); fix the file (see README, Team set-up)") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read it ({exc.strerror or exc})") from None
    known = ", ".join(f"{section}.{key}" for section, key in KEYS)
    values: dict[str, str] = {}
    for section, entries in table.items():
        if not isinstance(entries, dict):
            raise BadInput(f"{path}: {section} is not a [section]; known entries: {known}")
        for key, value in entries.items():
            env = KEYS.get((section, key))
            if env is None:
                raise BadInput(f"{path}: unknown entry {section}.{key}; known entries: {known}")
            if not isinstance(value, str) or not value.strip():
                raise BadInput(f"{path}: {section}.{key} must be a non-empty string (quoted), not {value!r}")
            values[env] = value.strip()
    remote = values.get(REMOTE_ENV)
    if remote and _is_relative_path(remote):
        values[REMOTE_ENV] = str((path.parent / remote).resolve())
    return values


def _is_relative_path(remote: str) -> bool:
    """True for a relative local folder (``../dvc-store``), not a URL or a configured remote's name."""
    return "://" not in remote and ("/" in remote or remote.startswith(".")) and not Path(remote).is_absolute()


#: Environment variable -> the settings entry that set it in this process ("scribbles.toml [mlflow] tracking_uri").
_APPLIED: dict[str, str] = {}


def apply_settings(start: Path | None = None) -> Path | None:
    """Set the environment from the settings file (variables already set win); returns the file used."""
    path = find_settings(start)
    if path is None:
        return None
    entries = {env: f"{path.name} [{section}] {key}" for (section, key), env in KEYS.items()}
    for env, value in read_settings(path).items():
        if env not in os.environ:
            os.environ[env] = value
            _APPLIED[env] = entries[env]
    return path


def named(env: str) -> str:
    """How a message names the setting behind ``env``: the scribbles.toml entry that set it, else ``env``."""
    return _APPLIED.get(env, env) if os.environ.get(env) else env


def current(start: Path | None = None) -> tuple[Path | None, dict[str, Setting]]:
    """The settings file and, per environment variable, the value in effect and its source."""
    path = find_settings(start)
    from_file = read_settings(path) if path else {}
    found: dict[str, Setting] = {}
    for env in KEYS.values():
        # apply_settings copies the file into the environment: an equal value there came from the file.
        value = os.environ.get(env)
        if value and from_file.get(env) != value:
            found[env] = Setting(env, value, "environment")
        elif env in from_file:
            found[env] = Setting(env, from_file[env], str(path))
        else:
            found[env] = Setting(env, None, "default")
    return path, found
