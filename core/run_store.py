"""Reading runs back from where a tracker wrote them: the protocol a tracker plugin provides.

The flows read runs back for the fold cache (an identical finished fold), ``resume`` (a stopped run's
finished folds), ``rerun`` (a run's recorded config), ``compare`` and ``promote`` (runs side by side,
paired fold scores, the model registry). They do it through this protocol and ``StoredRun``, which
speak scribbles' own vocabulary; the tracker that writes runs (the ``mlflow`` tracker,
``scribbles.plugins.trackers``) provides it from ``Tracker.store()`` and owns every store-specific name:
how a record key becomes a tag, which file an artifact is, how a parent is linked. So the flows import
no tracking library, and a tracker plugin for another store brings its own reader.

Record keys are the ``RunContext.tags`` keys the flows write (``data_version``, ``git_commit``,
``fold``, ``cache_key``, ``cached_from``, ``split_fingerprint``, ``sweep``, ``pid``, ``host``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

#: A run's status, as MLflow names them (RUNNING, SCHEDULED, FINISHED, FAILED, KILLED).
FINISHED, FAILED, KILLED, RUNNING = "FINISHED", "FAILED", "KILLED", "RUNNING"

#: The key of ``RunContext.links`` (and ``continues``) a tracker that provides a run store fills with the
#: run's id in that store: ``resume``, pruning and the results table read it. Its value names the one
#: store scribbles ships; a tracker for another store fills the same key.
STORE_RUN_ID = "mlflow_run_id"

#: The artifacts a run store reads back, by their protocol names.
CONFIG, FOLD_RESULT, FOLD_SCORES = "config", "fold_result", "fold_scores"


@dataclass(frozen=True)
class StoredRun:
    """One run as its store recorded it, in scribbles' terms.

    ``start_time`` is milliseconds since the epoch; ``parent_id`` is "" for a top-level run; ``record``
    holds the run's scribbles record (its ``RunContext.tags`` and what the tracker added, e.g. ``fold``).
    """

    run_id: str
    name: str
    experiment_id: str
    status: str
    active: bool = True
    start_time: int = 0
    parent_id: str = ""
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    record: Mapping[str, str] = field(default_factory=dict)

    @property
    def fold(self) -> int | None:
        """The fold index of a fold run; None for any other run."""
        value = self.record.get("fold")
        return int(value) if value is not None and str(value).isdigit() else None

    @property
    def is_parent(self) -> bool:
        """True for a scribbles parent run: made by scribbles (it records its data version), not a fold run."""
        return "data_version" in self.record and not self.parent_id and self.fold is None


@dataclass
class Migration:
    """What a copy between two stores did: counts, and the map from source run ids to the new ones."""

    experiments: int = 0
    runs: int = 0
    skipped: int = 0
    metrics: int = 0
    params: int = 0
    artifacts: int = 0
    run_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version: its model name, version and the run it was made from."""

    name: str
    version: str
    run_id: str


@runtime_checkable
class RunStore(Protocol):
    """Where a tracker keeps runs, read back (and the few writes the flows make after a run started).

    Every method raises ``BadInput`` (one line) for a store that cannot be opened, and returns
    None or empty results for runs and artifacts that are not there.
    """

    #: The store's address as given (it may hold credentials: show ``shown``, never ``uri``).
    uri: str

    @property
    def shown(self) -> str:
        """The address with any password masked, for messages."""
        ...

    def check(self, must_exist: bool = False, field: str = "tracking") -> None:
        """BadInput naming ``field`` unless the store can be opened (``must_exist``: it holds runs)."""
        ...

    def get(self, run_id: str) -> StoredRun | None:
        """The run ``run_id``, or None when the store has no such run."""
        ...

    def experiment_name(self, experiment_id: str) -> str:
        """The name of experiment ``experiment_id``."""
        ...

    def experiment_names(self) -> list[str]:
        """Every active experiment's name."""
        ...

    def runs(self, experiment: str | None = None, *, parent: str | None = None, status: str | None = None,
             record: Mapping[str, str] | None = None, limit: int = 1000, id_prefix: str | None = None
             ) -> list[StoredRun]:
        """Active runs, newest first: of experiment ``experiment`` (a name; None: every experiment), children
        of run ``parent``, with status ``status``, whose record holds every item of ``record`` ("*": any
        value), whose id starts with ``id_prefix`` (lower-case hex; searched in the whole store)."""
        ...

    def artifact(self, run_id: str, name: str) -> bytes | None:
        """The bytes of artifact ``name`` (``CONFIG``, ``FOLD_RESULT``, ``FOLD_SCORES``) of run ``run_id``,
        or None when it has none."""
        ...

    def verified_artifact(self, run: StoredRun, name: str) -> bytes | str:
        """The bytes of ``run``'s artifact ``name`` when they match the content hash the tracker recorded when
        the run finished; else why they cannot be trusted, on one line."""
        ...

    def set_record(self, run_id: str, values: Mapping[str, str]) -> None:
        """Add ``values`` to the record of run ``run_id``."""
        ...

    def end(self, run_id: str, status: str) -> None:
        """End run ``run_id`` with ``status`` (FINISHED, FAILED or KILLED)."""
        ...

    def alias_holder(self, name: str, alias: str) -> ModelVersion | None:
        """The registered version of model ``name`` that holds ``alias``, or None."""
        ...

    def ensemble(self, run: StoredRun, folds: list[StoredRun], out: Path) -> tuple[Path, int]:
        """The models the fold runs ``folds`` of ``run`` kept, saved in ``out`` as one model that averages
        their class probabilities (``scribbles.core.evaluation.Ensemble``); its folder and member count."""
        ...

    def register(self, run: StoredRun, folder: Path, name: str, alias: str, record: Mapping[str, str],
                 description: str) -> str:
        """The model saved in ``folder`` logged on ``run`` and registered as a new version of ``name``
        holding ``alias``, with ``record``; returns the version."""
        ...

    def copy_to(self, target: str, progress: Callable[[str], None]) -> Migration:
        """Copy every active experiment and run into the store at ``target`` (resumable)."""
        ...


def find_run(store: RunStore, run_id: str) -> StoredRun:
    """The run ``run_id``; for a fold run, its parent. BadInput when the store has no such scribbles run."""
    from .errors import BadInput

    run = store.get(run_id) or _by_prefix(store, run_id)
    if run is None:
        raise BadInput(f"RUN_ID: no run {run_id!r} in {store.shown}; `scribbles compare` lists the recent ones "
                       "(--tracking-uri names another store)")
    if run.parent_id and run.fold is not None:
        parent = store.get(run.parent_id)
        run = parent if parent is not None else run
    if "data_version" not in run.record:
        raise BadInput(f"RUN_ID: run {run_id} was not made by scribbles (it records no data version)")
    return run


#: The shortest run id prefix taken for a whole id (tables show 8 characters, as git shows commits).
MIN_PREFIX = 6


def _by_prefix(store: RunStore, prefix: str) -> StoredRun | None:
    """The one run among the store's most recent whose id starts with ``prefix`` (at least ``MIN_PREFIX`` hex
    characters); None when none does; BadInput naming them when several do."""
    from .errors import BadInput

    if any(c not in "0123456789abcdef" for c in prefix.lower()):
        return None
    if len(prefix) < MIN_PREFIX:
        raise BadInput(f"RUN_ID: no run {prefix!r} in {store.shown}; a shortened id needs at least {MIN_PREFIX} "
                       "characters (tables show 8)")
    found = {run.run_id: run for run in store.runs(id_prefix=prefix.lower(), limit=10)}
    if len(found) > 1:
        raise BadInput(f"RUN_ID: {prefix!r} starts {len(found)} runs ({', '.join(sorted(found))}); give more of "
                       "the id")
    return next(iter(found.values()), None)


def stored_record(values: Mapping[str, Any]) -> dict[str, str]:
    """``values`` as a run record: every value a string."""
    return {str(k): str(v) for k, v in values.items()}
