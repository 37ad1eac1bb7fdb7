"""Fold results reused across runs, keyed on content and verified; and why a fold was trained again.

A fold's key hashes what decides its result: the data version, the resolved config minus operational
keys, and the code that trains (``code_version``: scribbles' own version and source, each plugin
distribution's version and source) - not the user's repository commit, so committing a config or
a note retrains nothing. The tracker's run store (``scribbles.core.run_store``) is the cache: a fold
run recording the same ``cache_key`` points to a trained fold run whose fold result (metrics and
history) a new run reuses, recording ``cached_from`` on its fold run. A reuse is refused - and
the fold trained, saying why - unless that source fold run and its parent are active (not deleted)
and FINISHED and the stored result matches the content hash the source recorded when it finished.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

from scribbles.core import RunStore, StoredRun
from scribbles.core.config import is_operational
from scribbles.core.registry import ENTRY_POINT_GROUP
from scribbles.core.run_store import FINISHED, FOLD_RESULT

#: The record keys of a fold run: its cache key, the run its result came from, and the code's version.
KEY, CACHED_KEY, CODE_KEY = "cache_key", "cached_from", "code_version"
#: The packages of scribbles that train (its test kit does not).
OWN_PACKAGES = ("scribbles.core", "scribbles.plugins", "scribbles.flows")


def source_hash(folders: list[Path] | None = None, files: list[Path] | None = None) -> str:
    """A hash of the Python source in ``folders`` (recursively) and ``files``: names and contents."""
    digest = hashlib.sha256()
    found = [(f.name, f) for f in files or [] if f.is_file()]
    for folder in folders or []:
        found += [(str(p.relative_to(folder.parent)), p) for p in folder.rglob("*.py") if "__pycache__" not in p.parts]
    for name, path in sorted(found):
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _module_source(module: str) -> str:
    """The source hash of the top-level module or package ``module`` comes from ('' when not found)."""
    try:
        spec = importlib.util.find_spec(module.split(".")[0])
    except (ImportError, ValueError):
        return ""
    if spec is None:
        return ""
    if spec.submodule_search_locations:
        return source_hash(folders=[Path(p) for p in spec.submodule_search_locations])
    return source_hash(files=[Path(spec.origin)]) if spec.origin and spec.origin.endswith(".py") else ""


def code_version() -> str:
    """The code that trains, as JSON: scribbles' version and source hash, and each plugin distribution's
    version and the hash of its modules' source (an edit without a new version counts too)."""
    own = []
    for package in OWN_PACKAGES:
        spec = importlib.util.find_spec(package)
        own += [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    try:
        version = md.version("scribbles")
    except md.PackageNotFoundError:
        version = "unknown"
    parts = {"scribbles": f"{version} src {source_hash(folders=own)}"}
    modules: dict[str, set[str]] = {}
    versions: dict[str, str] = {}
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        name = ep.dist.metadata["Name"] if ep.dist is not None else ep.value
        versions[name] = ep.dist.version if ep.dist is not None else "unknown"
        modules.setdefault(name, set()).add(ep.module)
    for name in sorted(modules):
        hashes = "+".join(h for h in (_module_source(m) for m in sorted(modules[name])) if h)
        parts[name] = f"{versions[name]} src {hashes or 'unknown'}"
    return json.dumps(parts, sort_keys=True)


def keyed_params(params: dict[str, str]) -> dict[str, str]:
    """A run's params (the flattened, masked resolved config) without operational keys: what a key covers."""
    return {k: v for k, v in params.items() if not is_operational(k)}


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


def differing(before: str, now: str, width: int = 12) -> tuple[str, str]:
    """Both values cut to ``width`` characters from where they first differ (a shared prefix hidden)."""
    if len(before) <= width and len(now) <= width:
        return before, now
    start = next((i for i, (a, b) in enumerate(zip(before, now, strict=False)) if a != b),
                 min(len(before), len(now)))
    start = max(start - 2, 0)

    def cut(value: str) -> str:
        part = value[start:start + width]
        return ("…" if start else "") + part + ("…" if start + width < len(value) else "")

    return cut(before), cut(now)


def _code_changes(before: str, now: str) -> str:
    """Which distributions' code differs: "scribbles 0.1.0 src 1a2b… -> 0.1.0 src 9f8e…; +my-plugin 1.0"."""
    try:
        old, new = json.loads(before), json.loads(now)
        if not isinstance(old, dict) or not isinstance(new, dict):
            raise ValueError
    except ValueError:
        return " -> ".join(differing(before, now, 20))
    changes = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            changes.append(f"+{name} {new[name]}")
        elif name not in new:
            changes.append(f"-{name}")
        elif old[name] != new[name]:
            changes.append(f"{name} {_code_value(old[name])} -> {_code_value(new[name])}")
    return "; ".join(changes)


def _code_value(value: str) -> str:
    """A distribution's recorded code as a reason shows it: "1.0 src 1a2b3c4d…" (version whole, hash cut)."""
    version, _, digest = value.partition(" src ")
    if digest:
        return f"{version} src {digest[:8]}…"
    return value if len(value) <= 24 else value[:24] + "…"


def explain(now: Inputs, before: Inputs) -> str:
    """Why a fold's key changed: "train.lr 0.01 -> 0.02", "data changed", "code changed" (all that apply),
    each showing the part that differs."""
    reasons = []
    if now.data_version != before.data_version:
        reasons.append("data changed ({} -> {})".format(*differing(before.data_version, now.data_version)))
    if now.code != before.code:
        reasons.append(f"code changed ({_code_changes(before.code, now.code)})")
    if now.plugins != before.plugins and now.code == before.code:
        reasons.append("plugin versions changed")
    for key in sorted(set(now.params) | set(before.params)):
        old, new = before.params.get(key), now.params.get(key)
        if old != new and (old or "").strip() + (new or "").strip():  # unset and empty are the same nothing
            reasons.append(f"{key} {_shown(old)} -> {_shown(new)}")
    return "; ".join(reasons) or "no finished run of this fold with the same inputs"


def _shown(value: str | None) -> str:
    """A recorded parameter as a reason shows it: never a blank (a section recorded as empty text)."""
    return "(unset)" if value is None else value if value.strip() else "(empty)"


class FoldCache:
    """Finished fold runs in one experiment of a run store, looked up by key, fold index or parent run."""

    def __init__(self, store: RunStore, experiment: str) -> None:
        self.store, self.experiment = store, experiment
        self._parents: dict[str, Inputs | None] = {}

    def _search(self, record: dict[str, str], limit: int = 1, parent: str | None = None) -> list[StoredRun]:
        return self.store.runs(self.experiment, parent=parent, status=FINISHED, record=record, limit=limit)

    def record(self, run: StoredRun) -> tuple[dict[str, float], list[dict[str, float]]] | str:
        """The metrics and history a fold run recorded as its fold result, checked against the content
        hash recorded when it finished; a reason (str) when it cannot be trusted."""
        raw = self.store.verified_artifact(run, FOLD_RESULT)
        if isinstance(raw, str):
            return raw
        try:
            saved = json.loads(raw)
            return dict(saved["metrics"]), list(saved.get("history", []))
        except (ValueError, KeyError, TypeError):
            return f"cached result of run {run.run_id} is unreadable"

    def _usable(self, run_id: str, what: str) -> tuple[StoredRun | None, str]:
        """The run ``run_id`` when it is active and FINISHED, else None and why not."""
        run = self.store.get(run_id)
        if run is None:
            return None, f"{what} {run_id} is gone"
        if not run.active:
            return None, f"{what} {run_id} was deleted"
        if run.status != FINISHED:
            return None, f"{what} {run_id} is {run.status}, not FINISHED"
        return run, ""

    def source(self, run: StoredRun) -> tuple[StoredRun | None, str]:
        """The trained fold run a fold run's result comes from, when it and its parent are active and
        FINISHED; else None and why not."""
        source_id = run.record.get(CACHED_KEY) or run.run_id
        source, why = self._usable(source_id, "the cached result's run")
        if source is None:
            return None, why
        if source.parent_id:
            parent, why = self._usable(source.parent_id, f"the parent run of cached run {source_id},")
            if parent is None:
                return None, why
        return source, ""

    def find(self, key: str) -> tuple[Reuse | None, str]:
        """The latest fold run with ``key`` whose trained source checks out, as a reuse of that source;
        else None and why no candidate could be used ("" when there was none)."""
        refused = ""
        for run in self._search({KEY: key}, limit=5):
            source, why = self.source(run)
            saved = self.record(source) if source is not None else why
            if isinstance(saved, str) or source is None:
                refused = refused or str(saved)
                continue
            return Reuse(key, "cached", source.run_id, saved[0], saved[1], f"cached from run {source.run_id}"), ""
        return None, refused

    def previous_inputs(self, fold: int) -> Inputs | None:
        """The inputs of the latest finished run of fold ``fold`` (its parent's record), for ``explain``."""
        runs = self._search({"fold": str(fold), KEY: "*"})
        if not runs:
            return None
        parent = runs[0].parent_id
        if parent not in self._parents:
            self._parents[parent] = self._inputs_of(parent)
        return self._parents[parent]

    def _inputs_of(self, run_id: str) -> Inputs | None:
        run = self.store.get(run_id) if run_id else None
        if run is None:  # a parent deleted by hand: nothing to compare with
            return None
        record = run.record
        return Inputs(keyed_params(dict(run.params)), record.get("data_version", ""), record.get(CODE_KEY, ""),
                      record.get("plugins", ""))

    def finished_folds(self, parent: str) -> dict[int, StoredRun]:
        """The finished fold runs of parent run ``parent``, by fold index."""
        out: dict[int, StoredRun] = {}
        for run in self._search({}, limit=1000, parent=parent):
            if run.fold is not None and run.fold not in out:
                out[run.fold] = run
        return out
