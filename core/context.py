"""The context objects passed to the lifecycle hooks.

Each hook takes one keyword-only context: adding a field here breaks no plugin. Every tracker gets the
same object, in an order nothing relies on, and a tracker may read it later (on a logging thread): what
a fold or an epoch reports (its metrics, artifacts and history) is therefore read-only. A number of your
own per fold is a ``Metric`` plugin; a file is the tracker's own to write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contracts import Fold


def _read_only(field: str) -> TypeError:
    """The error for a change to a reported field (``FoldEndContext.metrics``, ...), with the fix."""
    return TypeError(f"{field} is read-only: every tracker reads the same values; report a number through a "
                     "Metric plugin, write a file of your own")


class ReadOnlyDict(dict):  # type: ignore[type-arg]
    """A dict that refuses changes (``TypeError`` naming the field): a context's reported values.

    A dict subclass, not ``MappingProxyType``: trackers serialise these with ``json`` as they are.
    """

    def __init__(self, values: Any = (), *, field: str = "") -> None:
        super().__init__(values)
        self._field = field

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise _read_only(self._field or "this context field")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> Any:  # copy and deepcopy give a plain dict back
        return (dict, (dict(self),))


class _Reported:
    """A context whose ``REPORTED`` fields are set once: a tracker that assigned a new dict to
    ``ctx.metrics`` changed what the trackers after it logged (exit 0), as adding to it did."""

    REPORTED: tuple[str, ...] = ()

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.REPORTED and name in self.__dict__:
            raise _read_only(f"{type(self).__name__}.{name}")
        super().__setattr__(name, value)


@dataclass
class RunContext:
    """One experiment run: its name, resolved config, flattened params and lineage tags."""

    experiment: str
    config: dict[str, Any]
    params: dict[str, str]
    tags: dict[str, str]
    data_version: str
    data_source: str
    data_rev: str | None
    n_folds: int
    run_name: str = ""
    #: Files every tracker should keep with the parent run (resolved config, fold report, plots).
    artifacts: dict[str, Path] = field(default_factory=dict)
    #: Where trackers say the run can be found, e.g. {STORE_RUN_ID: "..."} (``core.run_store``); trackers fill it.
    links: dict[str, str] = field(default_factory=dict)
    #: "run", or "sweep" for the run that holds a sweep's trials (it has no folds of its own).
    kind: str = "run"
    #: A sweep trial's sweep run: trackers nest the trial under it.
    parent: RunContext | None = None
    #: The links of an earlier, stopped run that this one finishes (``scribbles resume``): trackers
    #: reopen that run instead of starting a new one.
    continues: dict[str, str] = field(default_factory=dict)


@dataclass
class FoldContext:
    """A fold about to be trained."""

    run: RunContext
    fold: Fold
    report: dict[str, Any]
    #: The fold's cache key (a hash of data version, config, code and plugin versions).
    key: str = ""
    #: "" when the fold is trained; "cached" when an earlier identical run's result is reused (trackers
    #: record a new fold run tagged with ``reused_from``); "resumed" when the run being finished
    #: already holds this fold's finished run (trackers record nothing new).
    reuse: str = ""
    reused_from: str = ""
    #: Why the fold is trained ("train.lr 0.01 -> 0.02", "data changed") or where its result comes from.
    reason: str = ""


@dataclass
class EpochContext(_Reported):
    """The end of one training epoch of one fold."""

    run: RunContext
    fold_index: int
    epoch: int
    metrics: dict[str, float]

    REPORTED = ("metrics",)

    def __post_init__(self) -> None:
        self.__dict__["metrics"] = ReadOnlyDict(self.metrics, field="EpochContext.metrics")


@dataclass
class FoldEndContext(_Reported):
    """A fold trained and evaluated: final metrics with and without TTA."""

    run: RunContext
    fold_index: int
    metrics: dict[str, float]
    artifacts: dict[str, Path] = field(default_factory=dict)
    #: The trained model (a torch module taking raw features, or a scikit-learn estimator) and a few
    #: rows it takes, for trackers that keep the model with its signature and an input example.
    model: Any = None
    input_example: Any = None
    #: Valid-row targets and plain (no TTA) predictions as class positions, and the class labels.
    y_true: Any = None
    y_pred: Any = None
    classes: list[str] = field(default_factory=list)
    #: As in ``FoldContext``: "", "cached" or "resumed".
    reuse: str = ""
    #: For a reused fold: the run its result comes from (its model, plots and counts are there).
    reused_from: str = ""
    #: The fold's per-epoch metrics, as ``scribbles_epoch_end`` reported them (or, for a resumed fold,
    #: as the stopped run recorded them: trackers draw them without logging them again).
    history: list[dict[str, float]] = field(default_factory=list)

    REPORTED = ("metrics", "artifacts", "history", "model", "y_true", "y_pred", "classes")

    def __post_init__(self) -> None:
        self.__dict__["metrics"] = ReadOnlyDict(self.metrics, field="FoldEndContext.metrics")
        self.__dict__["artifacts"] = ReadOnlyDict(self.artifacts, field="FoldEndContext.artifacts")
        self.__dict__["history"] = tuple(ReadOnlyDict(epoch, field="FoldEndContext.history")
                                         for epoch in self.history)


@dataclass
class RunEndContext(_Reported):
    """The run finished: fold means and standard deviations."""

    run: RunContext
    summary: dict[str, float]
    #: A sweep run's trials, best first: {"trial", "assignment", "summary", "links"} each.
    trials: list[dict[str, Any]] = field(default_factory=list)

    REPORTED = ("summary", "trials")

    def __post_init__(self) -> None:
        self.__dict__["summary"] = ReadOnlyDict(self.summary, field="RunEndContext.summary")


@dataclass
class RunErrorContext:
    """The run stopped: ``status`` is FAILED for an error, KILLED for Ctrl-C or SIGTERM."""

    run: RunContext
    error: BaseException
    status: str = "FAILED"
