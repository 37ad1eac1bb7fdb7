"""`scribbles rerun`: the config, data version and commit of an MLflow run, made ready to run again."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scribbles.core import BadInput, RunStore, StoredRun, default_registry
from scribbles.core.config import apply_overrides, parse_config

from .lineage import git_commit
from .records import find_run, run_config
from .redact import masked_fields
from .stores import open_store


@dataclass
class Rerun:
    """What a rerun runs: the recorded config (data pinned to the recorded version) and its tags."""

    run_id: str
    config: dict[str, Any]
    tags: dict[str, str]
    notes: list[str] = field(default_factory=list)
    #: The store the recorded run was read from.
    tracking_uri: str = ""


def data_version_of(config: dict[str, Any]) -> str:
    """The version the config's data source reads now (checked, not loaded, where the source can)."""
    data = dict(config["data"])
    source = default_registry().create("data", str(data.pop("name")), field="data", **data)
    version = source.verify()
    return str(version if version is not None else source.load().version)


def pin_data(config: dict[str, Any], version: str, commit: str) -> tuple[dict[str, Any], str]:
    """``config`` reading data version ``version``: as recorded, else at the run's commit through DVC.

    DVC reads the file as it was at that commit (from its cache or remote) without touching the
    workspace, so data/ stays as the user has it. Returns the config and where the data came from.
    """
    tried: list[str] = []
    candidates: list[tuple[str, dict[str, Any]]] = [("the recorded config", config)]
    data = config["data"]
    if data.get("name") == "dvc" and not data.get("rev") and commit not in ("", "unknown"):
        rev = commit.removesuffix("+dirty")
        candidates.append((f"commit {rev[:12]}", {**config, "data": {**data, "rev": rev, "allow_dirty": False}}))
    for where, candidate in candidates:
        try:
            found = data_version_of(candidate)
        except BadInput as exc:
            tried.append(f"{where}: {exc}")
            continue
        if found == version:
            return candidate, where
        tried.append(f"{where}: data version {found}")
    raise BadInput(
        f"RUN_ID: the run read data {data.get('path')} at version {version}, which is not available: "
        + "; ".join(tried) + ". Restore that version (`git checkout <commit> -- data.dvc && dvc checkout`) "
        "or `dvc pull` it, then rerun"
    )


def recorded(store: RunStore, run: StoredRun, overrides: list[str], secrets_hint: str,
             code_note: str) -> tuple[dict[str, Any], list[str]]:
    """The run's recorded config (with ``overrides``), validated, its data pinned; notes on data and code.

    ``secrets_hint`` ends the error when the record hides secrets; ``code_note`` follows a commit that
    differs from the code here.
    """
    config = apply_overrides(run_config(store, run), overrides)
    masked = masked_fields(config)
    if masked:
        raise BadInput(f"RUN_ID: the run's config hides secrets ({', '.join(masked)}); "
                       + secrets_hint.format(run_id=run.run_id, field=masked[0]))
    parse_config(config, f"run {run.run_id} config")  # a config that no longer validates: exit 2
    version, commit = run.record["data_version"], run.record.get("git_commit", "unknown")
    config, where = pin_data(config, version, commit)
    notes = [f"data {config['data'].get('path')} at version {version[:12]} from {where}"]
    now = git_commit()
    if commit != now:
        notes.append(f"the project was at commit {commit[:12]} for the run and is at {now[:12]} now (the data are read "
                     f"at the run's version): {code_note}")
    return config, notes


def prepare(run_id: str, overrides: list[str], tracking_uri: str | None = None) -> Rerun:
    """Read run ``run_id`` (a fold run means its parent) from the store it was written to (or
    ``tracking_uri``) and pin its data version."""
    store = open_store(tracking_uri, [run_id])
    run = find_run(store, run_id)
    config, notes = recorded(store, run, overrides, "pass them again, e.g. `scribbles rerun {run_id} --set "
                             "{field}=VALUE`", "metrics match only when the code does")
    return Rerun(run.run_id, config, {"rerun_of": run.run_id}, notes, store.uri)
