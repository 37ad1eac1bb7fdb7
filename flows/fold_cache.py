"""Fold results reused across runs, keyed on content; and why a fold was trained again.

A fold's key hashes what decides its result: the data version, the resolved config minus cosmetic
keys, the code version (git commit plus a hash of uncommitted changes) and the plugin versions. The
MLflow store is the cache: a FINISHED fold run with the same ``scribbles.cache_key`` tag holds the
metrics and history (``fold_result.json``) that a new run reuses, tagging its fold run
``scribbles.cached_from``. A fold run deleted in MLflow is never reused.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Keys that change how a run is carried out or labelled, never what a fold learns.
COSMETIC = (
    "experiment", "tracking", "plugins", "data.allow_dirty", "data.rev", "train.timeout",
    "train.parallel_folds", "train.dask_address", "train.checkpoint_dir", "train.restarts",
    "train.rdzv_endpoint",
)
RESULT_FILE = "fold_result.json"
KEY_TAG, CACHED_TAG, WHY_TAG, CODE_TAG = (
    "scribbles.cache_key", "scribbles.cached_from", "scribbles.why", "scribbles.code_version",
)


def code_version(cwd: Path | None = None) -> str:
    """The commit checked out in ``cwd``, plus ``+`` a hash of uncommitted changes; 'unknown' outside git."""
    def git(*args: str) -> bytes:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").decode().strip()
        # Data are versioned by DVC and keyed by their own version: a changed data.dvc is not code.
        diff = git("diff", "HEAD", "--binary", "--", ".", ":(exclude)*.dvc", ":(exclude)dvc.lock")
        # Untracked Python files are code; other untracked files (mlflow.db, outputs) are not.
        untracked = git("ls-files", "--others", "--exclude-standard", "-z", "--", "*.py").split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    digest = hashlib.sha256(diff)
    for name in sorted(n for n in untracked if n):
        path = (cwd or Path.cwd()) / name.decode()
        digest.update(name + b"\0")
        if path.is_file() and path.stat().st_size < 10_000_000:  # big untracked files are data, not code
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    if not diff and not any(untracked):
        return commit
    return f"{commit}+{digest.hexdigest()[:12]}"


def keyed_params(params: dict[str, str]) -> dict[str, str]:
    """A run's params (the flattened, masked resolved config) without cosmetic keys: what a key covers."""
    return {k: v for k, v in params.items() if not any(k == c or k.startswith(c + ".") for c in COSMETIC)}


@dataclass(frozen=True)
class Inputs:
    """What a fold's result depends on."""

    params: dict[str, str]
    data_version: str
    code: str
    plugins: str

    def key(self, fold: int) -> str:
        """The fold's cache key."""
        text = json.dumps([self.params, self.data_version, self.code, self.plugins, fold], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class Reuse:
    """What the flow does with one fold: train it, or reuse an earlier fold run's result."""

    key: str
    #: "" (train), "cached" (an earlier run's identical fold) or "resumed" (this parent's own finished fold).
    mode: str = ""
    #: The run reused (its MLflow run id), and its record.
    source: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    #: Why the fold is trained, or where its result comes from, in a few words.
    reason: str = ""


def _short(value: str, width: int = 12) -> str:
    return value if len(value) <= width else value[:width]


def explain(now: Inputs, before: Inputs) -> str:
    """Why a fold's key changed: "train.lr 0.01 -> 0.02", "data changed", "code changed" (all that apply)."""
    reasons = []
    if now.data_version != before.data_version:
        reasons.append(f"data changed ({_short(before.data_version)} -> {_short(now.data_version)})")
    if now.code != before.code:
        reasons.append(f"code changed ({_short(before.code, 20)} -> {_short(now.code, 20)})")
    if now.plugins != before.plugins:
        reasons.append("plugin versions changed")
    for key in sorted(set(now.params) | set(before.params)):
        old, new = before.params.get(key, "(unset)"), now.params.get(key, "(unset)")
        if old != new:
            reasons.append(f"{key} {old} -> {new}")
    return "; ".join(reasons) or "no finished run of this fold with the same inputs"


class FoldCache:
    """Finished fold runs in one MLflow experiment, looked up by key, fold index or parent run."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_ids = [found.experiment_id] if found else []
        self._parents: dict[str, Inputs | None] = {}

    def _search(self, query: str, limit: int = 1) -> list[Any]:
        if not self.experiment_ids:
            return []
        return list(self.client.search_runs(
            self.experiment_ids, f"attributes.status = 'FINISHED' and {query}",
            order_by=["attributes.start_time DESC"], max_results=limit,
        ))

    def record(self, run: Any) -> tuple[dict[str, float], list[dict[str, float]]] | None:
        """The metrics and history a fold run recorded in ``fold_result.json``; None when it has none."""
        with tempfile.TemporaryDirectory(prefix="scribbles-cache-") as tmp:
            try:
                path = self.client.download_artifacts(run.info.run_id, RESULT_FILE, tmp)
            except Exception:  # an older run, or an artifact store gone: the fold is trained instead
                return None
            saved = json.loads(Path(path).read_text())
        return dict(saved["metrics"]), list(saved.get("history", []))

    def find(self, key: str) -> Reuse | None:
        """The latest finished fold run with ``key``, as a reuse of its original (trained) run."""
        for run in self._search(f"tags.\"{KEY_TAG}\" = '{key}'", limit=5):
            saved = self.record(run)
            if saved is not None:
                source = run.data.tags.get(CACHED_TAG) or run.info.run_id
                return Reuse(key, "cached", source, saved[0], saved[1], f"cached from run {source}")
        return None

    def previous_inputs(self, fold: int) -> Inputs | None:
        """The inputs of the latest finished run of fold ``fold`` (its parent's record), for ``explain``."""
        runs = self._search(f"tags.\"scribbles.fold\" = '{fold}' and tags.\"{KEY_TAG}\" LIKE '%'")
        if not runs:
            return None
        parent = runs[0].data.tags.get("mlflow.parentRunId", "")
        if parent not in self._parents:
            self._parents[parent] = self._inputs_of(parent)
        return self._parents[parent]

    def _inputs_of(self, run_id: str) -> Inputs | None:
        try:
            run = self.client.get_run(run_id)
        except Exception:  # a parent deleted by hand: nothing to compare with
            return None
        tags = run.data.tags
        return Inputs(keyed_params(dict(run.data.params)), tags.get("scribbles.data_version", ""),
                      tags.get(CODE_TAG, ""), tags.get("scribbles.plugins", ""))

    def finished_folds(self, parent: str) -> dict[int, Any]:
        """The finished fold runs of parent run ``parent``, by fold index."""
        runs = self._search(f"tags.\"mlflow.parentRunId\" = '{parent}'", limit=1000)
        out: dict[int, Any] = {}
        for run in runs:
            index = run.data.tags.get("scribbles.fold")
            if index is not None and int(index) not in out:
                out[int(index)] = run
        return out


def write_result(folder: Path, fold: int, metrics: dict[str, float], history: list[dict[str, float]]) -> Path:
    """``fold_result.json`` for fold ``fold``: what a later identical run, or a resume, reuses."""
    path = folder / f"fold-{fold}" / RESULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"fold": fold, "metrics": metrics, "history": history}))
    return path
