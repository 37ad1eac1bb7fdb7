"""Technique contracts: the classes every plugin subclasses, and the data they exchange.

``Technique``, ``Dataset`` and ``Fold`` are public API that plugins outside this repository use.
"""

from __future__ import annotations

import abc
import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from ._docs import first_paragraph
from .errors import BadInput
from .markers import FAMILIES as FAMILIES  # re-exported: defined beside the markers, importable here

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from .run_store import RunStore

DataKind = Literal["tabular", "sequence", "image"]


class NoParams(BaseModel):
    """Parameters of a technique that takes none."""

    model_config = ConfigDict(extra="forbid")


class Technique:
    """Base of every technique: a family, a unique name, validated ``Params`` and a docstring."""

    family: ClassVar[str] = ""
    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, params: BaseModel | None = None) -> None:
        self.params = params if params is not None else type(self).Params()

    @classmethod
    def example_params(cls, workdir: Path, dataset: Dataset) -> Mapping[str, Any] | None:
        """Fields for a dry run of the conformance kit on ``dataset`` (files may go in ``workdir``).

        None (the default) builds the technique from its ``Params`` defaults; a technique with required
        fields returns values that work on the kit's synthetic data.
        """
        return None

    @classmethod
    def summary(cls) -> str:
        """The first paragraph of the class docstring on one line, shown by ``scribbles plugins``."""
        return first_paragraph(cls.__doc__ or "")

    def prepare(self) -> None:
        """Get ready before the run starts: heavy imports, a store's tables. ``scribbles run`` calls it on
        every technique of the run while its Prefect server starts (seconds it would otherwise wait), with
        garbage collection off (imports then take about a sixth less). Best effort: what fails here fails
        again, with its reason, when the run starts. The default does nothing."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


@dataclass
class Dataset:
    """A loaded dataset: a frame plus the roles of its columns and the version it was read at.

    ``kind`` and ``shape`` tell models how to view one row's features: ``tabular`` (n_features,),
    ``sequence`` (steps, channels) or ``image`` (channels, height, width), in feature-column order.
    """

    frame: pd.DataFrame
    target: str
    features: list[str]
    group: str | None = None
    time: str | None = None
    version: str = ""
    kind: DataKind = "tabular"
    shape: tuple[int, ...] = ()
    source: str = ""
    rev: str | None = None

    def __post_init__(self) -> None:
        if not self.shape:
            self.shape = (len(self.features),)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def classes(self) -> np.ndarray:
        """The sorted distinct target values; models predict positions in this array."""
        return np.sort(self.frame[self.target].unique())

    def inputs(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Feature values as float32 of shape (rows, *shape)."""
        values = self.frame[self.features].to_numpy(dtype=np.float32)
        if rows is not None:
            values = values[rows]
        return values.reshape((len(values), *self.shape))

    def labels(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Targets as int64 class positions (see ``classes``)."""
        codes = np.searchsorted(self.classes, self.frame[self.target].to_numpy())
        return codes.astype(np.int64) if rows is None else codes[rows].astype(np.int64)


@dataclass(frozen=True)
class Fold:
    """One validation fold: sorted int64 row positions for training and for validation."""

    index: int
    train: np.ndarray
    valid: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "train", _sorted_positions(self.train))
        object.__setattr__(self, "valid", _sorted_positions(self.valid))

    @classmethod
    def of_sorted(cls, index: int, train: np.ndarray, valid: np.ndarray) -> Fold:
        """A fold from 1-d int64 arrays known to be in order (``np.flatnonzero``'s output), unchecked.

        The order check reads every position (0.1 s for five folds of 10M rows); splitters that build
        positions in order skip it. Anything else still goes through the check.
        """
        if not all(isinstance(side, np.ndarray) and side.dtype == np.int64 and side.ndim == 1
                   for side in (train, valid)):
            return cls(index, train, valid)
        fold = object.__new__(cls)
        for name, value in (("index", index), ("train", train), ("valid", valid)):
            object.__setattr__(fold, name, value)
        return fold


def _sorted_positions(values: Any) -> np.ndarray:
    """int64 positions in order; splitters mostly hand over sorted arrays, so check before sorting."""
    array = np.asarray(values, dtype=np.int64).reshape(-1)
    if len(array) > 1 and not (array[1:] >= array[:-1]).all():
        array = np.sort(array)
    return array


@dataclass(frozen=True)
class ModelSpec:
    """What a model builder needs to know about the data: kind, input shape, classes."""

    kind: DataKind
    input_shape: tuple[int, ...]
    n_classes: int
    #: The class labels as text, in class-position order; a label written as space-separated tokens
    #: ("walking running") is a token sequence for sequence-labelling heads and the ``ctc`` loss.
    classes: tuple[str, ...] = ()
    #: Rows of each class among the fold's train rows, in class order (class weights read it); () if unknown.
    class_counts: tuple[int, ...] = ()
    #: "classification" (``n_classes`` class scores per row) or "regression" (``n_classes`` is 1: one
    #: predicted value per row, in the target's units).
    task: str = "classification"

    def token_sequences(self) -> tuple[list[str], list[list[int]]]:
        """The sorted token vocabulary of ``classes`` and each class as a list of token positions."""
        split = [label.split() for label in self.classes]
        vocabulary = sorted({token for tokens in split for token in tokens})
        position = {token: i for i, token in enumerate(vocabulary)}
        return vocabulary, [[position[token] for token in tokens] for tokens in split]


@dataclass
class TrainResult:
    """What a strategy returns: the trained model and its per-epoch history."""

    model: Any
    history: list[dict[str, float]] = field(default_factory=list)
    world_size: int = 1


# ---------------------------------------------------------------- family bases


class DataSource(Technique, abc.ABC):
    """Base of the ``data`` family: ``load()`` returns a ``Dataset``."""

    family = "data"

    @abc.abstractmethod
    def load(self) -> Dataset:
        """Read the data and return it with its version."""

    def load_roles(self) -> Dataset:
        """The data with its target, group and time columns checked but its features not read: all that
        a splitter needs (``scribbles split``). The default loads everything (``load()``)."""
        return self.load()

    def verify(self) -> str | None:
        """The data version a run will record, told without loading the data; None (the default) when
        the source can tell only by loading. Raises ``BadInput`` when the data differ from their record.
        """
        return None

    @property
    def kind(self) -> DataKind:
        """How a row's features are viewed: the ``kind`` field of the params, else ``tabular``."""
        return getattr(self.params, "kind", "tabular")

    @property
    def shape(self) -> tuple[int, ...]:
        """One row's feature shape from the ``shape`` field of the params; () when it is the column count."""
        return tuple(getattr(self.params, "shape", None) or ())


class Splitter(Technique, abc.ABC):
    """Base of the ``splitter`` family: ``split(dataset)`` yields ``Fold`` objects."""

    family = "splitter"
    #: Which leakage checks apply beyond "no row on both sides": "group", "time" or both.
    guards: ClassVar[frozenset[str]] = frozenset()
    #: Rows or duration that must separate train from valid in time ("7D", 3), if any.
    gap: ClassVar[int | str] = 0
    #: Whether the folds keep class proportions (the target read as classes): refused for regression.
    stratified: ClassVar[bool] = False

    @abc.abstractmethod
    def split(self, dataset: Dataset) -> Iterator[Fold]:
        """Yield the folds of ``dataset``."""

    def as_sklearn(self) -> SklearnSplitter:
        """This splitter behind scikit-learn's ``split(X, y, groups)`` / ``get_n_splits()`` protocol."""
        return SklearnSplitter(self)

    def time_gap(self) -> int | str:
        """The gap the leakage guard enforces between train and valid times: a ``gap`` field of the
        params when it has one, else the class's ``gap`` (0: none)."""
        if hasattr(self.params, "gap"):
            return self.params.gap or 0
        return type(self).gap or 0

    def get_n_splits(self, dataset: Dataset | None = None) -> int:
        """How many folds ``split(dataset)`` yields (scikit-learn's name).

        The default reads an ``n_splits`` field of the params, else counts the folds of ``dataset``
        (0 without one); a splitter whose count is cheaper to tell overrides it.
        """
        if type(self).count_folds is not Splitter.count_folds:  # a plugin written before the rename
            return type(self).count_folds(self, dataset)
        n_splits = getattr(self.params, "n_splits", None)
        if n_splits is not None:
            return int(n_splits)
        return 0 if dataset is None else sum(1 for _ in self.split(dataset))

    def count_folds(self, dataset: Dataset | None = None) -> int:
        """The former name of ``get_n_splits``, kept for plugins that override or call it."""
        return self.get_n_splits(dataset)


class SklearnSplitter:
    """A scribbles splitter seen through scikit-learn's splitter protocol (for ``cross_val_score``).

    Bad input raises ``ValueError``, as scikit-learn's own splitters do.
    """

    def __init__(self, splitter: Splitter) -> None:
        self.splitter = splitter

    @staticmethod
    def _dataset(X: Any, y: Any, groups: Any) -> Dataset:
        n = len(X) if X is not None else len(y) if y is not None else len(groups)
        import pandas as pd

        frame = pd.DataFrame({"_y": np.zeros(n) if y is None else np.asarray(y).reshape(n, -1)[:, 0]})
        if groups is not None:
            frame["_g"] = np.asarray(groups)
        return Dataset(frame=frame, target="_y", features=[], group="_g" if groups is not None else None)

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """The number of folds."""
        given = X is not None or y is not None or groups is not None
        try:
            return self.splitter.get_n_splits(self._dataset(X, y, groups) if given else None)
        except BadInput as exc:
            raise ValueError(str(exc)) from None

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Train and test positions of each fold, as scikit-learn expects."""
        try:
            for fold in self.splitter.split(self._dataset(X, y, groups)):
                yield fold.train, fold.valid
        except BadInput as exc:
            raise ValueError(str(exc)) from None

    def __repr__(self) -> str:
        return f"SklearnSplitter({self.splitter!r})"


class Preprocessor(Technique, abc.ABC):
    """Base of the ``preprocess`` family: a scikit-learn transformer fitted on each fold's train rows only.

    ``columns`` in the params picks the feature columns it applies to; without them it applies to every
    feature column of the kinds in ``dtypes`` ("numeric" and/or "categorical", the latter meaning string,
    boolean or categorical columns). Steps run in config order, each on the output of the one before.
    """

    family = "preprocess"
    #: The column kinds a step without explicit ``columns`` applies to.
    dtypes: ClassVar[frozenset[str]] = frozenset({"numeric"})
    #: Whether the step keeps one output column per input column (scalers, imputers; not one-hot), so that
    #: sequence and image rows keep their shape.
    keeps_columns: ClassVar[bool] = True

    @abc.abstractmethod
    def transformer(self) -> Any:
        """A fresh, unfitted scikit-learn transformer (``fit``/``transform``, pandas output supported)."""

    def columns(self) -> list[str] | None:
        """The feature columns named in the params, or None for every column of the kinds in ``dtypes``."""
        return getattr(self.params, "columns", None)

    def column_problem(self, kind: str) -> str | None:
        """Why a column of ``kind`` ("numeric" or "categorical") named in ``columns`` cannot go through this
        step (one line, with the fix), or None when it can. The default: the kinds in ``dtypes`` only."""
        if kind in self.dtypes:
            return None
        return f"'{self.name}' takes {' and '.join(sorted(self.dtypes))} columns"

    def prepare(self) -> None:
        """Import scikit-learn's ``ColumnTransformer`` and ``Pipeline``, which chain the steps (about 0.5 s)."""
        from sklearn.compose import ColumnTransformer  # noqa: F401
        from sklearn.pipeline import Pipeline  # noqa: F401


#: Where a built module keeps its recipe (``scribbles.core.training.rebuild`` reads it).
RECIPE_ATTRIBUTE = "_scribbles_recipe"


def _stamping(build: Callable[..., Any]) -> Callable[..., Any]:
    """``build(self, spec)`` that leaves the recipe on the module it returns (when it can hold one)."""

    @functools.wraps(build)
    def stamped(self: Technique, spec: ModelSpec, *args: Any, **kwargs: Any) -> Any:
        module = build(self, spec, *args, **kwargs)
        recipe = {"family": self.family, "name": self.name, "params": self.params.model_dump(mode="json"),
                  "spec": {**asdict(spec), "input_shape": list(spec.input_shape), "classes": list(spec.classes)}}
        with contextlib.suppress(AttributeError, TypeError):  # __slots__: nothing to stamp, launch says so
            object.__setattr__(module, RECIPE_ATTRIBUTE, recipe)
        return module

    stamped.__scribbles_stamping__ = True  # type: ignore[attr-defined]
    return stamped


def _stamp_builds(cls: type) -> None:
    """Wrap a subclass's own ``build`` so the module it returns carries its recipe (core.recipe)."""

    build = cls.__dict__.get("build")
    if callable(build) and not getattr(build, "__isabstractmethod__", False) \
            and not getattr(build, "__scribbles_stamping__", False):
        cls.build = _stamping(build)  # type: ignore[attr-defined]


class Model(Technique, abc.ABC):
    """Base of the ``model`` family: ``build(spec)`` returns a ``torch.nn.Module``."""

    family = "model"
    kinds: ClassVar[frozenset[str]] = frozenset({"tabular", "sequence", "image"})
    #: Named outputs of the built module (see ``scribbles.core.evaluation.logits_of``); a plain tensor is "logits".
    outputs: ClassVar[frozenset[str]] = frozenset({"logits"})
    #: The strategy that trains this model when ``train.strategy`` is not given.
    default_strategy: ClassVar[str] = "single"
    #: The only strategies that can train this model; None (the default) allows every torch strategy.
    strategies: ClassVar[frozenset[str] | None] = None
    #: The tasks the model can learn; a torch model predicts a regression target as one output column.
    tasks: ClassVar[frozenset[str]] = frozenset({"classification", "regression"})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _stamp_builds(cls)

    @abc.abstractmethod
    def build(self, spec: ModelSpec) -> torch.nn.Module:
        """A fresh, untrained module for data described by ``spec``."""

    def pretrain(self, module: torch.nn.Module, inputs: torch.Tensor, config: Any) -> bool:
        """Fit ``module`` without labels on a fold's standardised training inputs, before the strategy
        trains it; return whether anything was done. The default does nothing
        (see ``scribbles.core.training.model_builder``)."""
        return False


class Loss(Technique, abc.ABC):
    """Base of the ``loss`` family: ``build(spec)`` returns a module called as ``loss(outputs, batch)``."""

    family = "loss"
    #: Model outputs this loss reads; a model that lacks one is refused when the config is resolved.
    needs: ClassVar[frozenset[str]] = frozenset({"logits"})
    #: The tasks this loss trains: class targets, or real-valued ones.
    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _stamp_builds(cls)

    @abc.abstractmethod
    def build(self, spec: ModelSpec) -> torch.nn.Module:
        """A loss module; ``batch`` is the ``(inputs, targets)`` pair the outputs came from."""


class Strategy(Technique, abc.ABC):
    """Base of the ``strategy`` family: how a model is trained (one process, DDP, ...)."""

    family = "strategy"

    @abc.abstractmethod
    def fit(
        self,
        model_builder: Callable[[], torch.nn.Module],
        loss: torch.nn.Module,
        train_data: torch.utils.data.Dataset,
        valid_data: torch.utils.data.Dataset,
        train_config: Any,
        callbacks: Sequence[Callable[[int, Mapping[str, float]], None]] = (),
    ) -> TrainResult:
        """Train a model built by ``model_builder``; call each callback as ``cb(epoch, metrics)``."""

    def check(self, config: Any, model: Model) -> None:
        """Refuse, with a ``ConfigError`` naming the field, a train config or model this strategy cannot
        run; called when a config is resolved, before any work. The default accepts everything."""


class View:
    """One augmented view of a batch: ``apply`` to inputs, ``invert`` on dense outputs.

    ``invert`` is given for transforms that move positions (flips, shifts, rotations): it maps outputs
    aligned with the augmented input (per time step or per pixel, laid out like the input with classes
    in place of channels) back to the original positions. The evaluator calls it only on dense outputs
    (more than two dimensions); class scores of shape (rows, classes) need no inverse.
    """

    def __init__(
        self,
        name: str,
        apply: Callable[[torch.Tensor], torch.Tensor],
        invert: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.name = name
        self._apply = apply
        self._invert = invert

    def apply(self, batch: torch.Tensor) -> torch.Tensor:
        """The augmented inputs."""
        return self._apply(batch)

    def invert(self, outputs: torch.Tensor) -> torch.Tensor:
        """Map dense outputs aligned with the augmented input back; identity when no inverse is given."""
        return outputs if self._invert is None else self._invert(outputs)

    def __repr__(self) -> str:
        return f"View({self.name!r})"


class TTATransform(Technique, abc.ABC):
    """Base of the ``tta`` family: a transform that expands into one or more views."""

    family = "tta"
    kinds: ClassVar[frozenset[str]] = frozenset()

    @property
    def label(self) -> str:
        """The transform's name in metric names (``accuracy_tta_<label>``); its ``name`` by default."""
        return self.name

    @abc.abstractmethod
    def views(self) -> list[View]:
        """Every view this transform contributes (its parameters expanded)."""

    def check(self, shape: tuple[int, ...]) -> str | None:
        """Why this transform cannot apply to rows of ``shape`` (a config error), or None when it can."""
        return None


class Metric(Technique, abc.ABC):
    """Base of the ``metric`` family: a score from true labels and predicted probabilities.

    A metric with ``needs = "reconstruction"`` scores a model output instead: ``compute`` then gets
    the flattened standardised inputs as ``y_true`` and the model's reconstruction as ``proba``.
    """

    family = "metric"
    greater_is_better: ClassVar[bool] = True
    #: "proba" (class probabilities; for regression, the predictions, (rows, 1)), or the name of a model
    #: output this metric scores.
    needs: ClassVar[str] = "proba"
    #: The tasks this metric scores.
    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})

    @abc.abstractmethod
    def compute(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        """The score; ``proba`` has one column per class."""


class Tracker(Technique):
    """Base of the ``tracker`` family: an instance is registered for the run's lifecycle hooks.

    A tracker that keeps runs where they can be read back (the fold cache, ``resume``, ``rerun``,
    ``compare``, ``promote``) returns its reader from ``store``; one that only reports returns None.
    """

    family = "tracker"

    def store(self) -> RunStore | None:
        """The run store this tracker writes to (``scribbles.core.run_store.RunStore``), or None."""
        return None


FAMILY_BASES: Mapping[str, type[Technique]] = {
    "data": DataSource,
    "splitter": Splitter,
    "preprocess": Preprocessor,
    "model": Model,
    "loss": Loss,
    "strategy": Strategy,
    "tta": TTATransform,
    "metric": Metric,
    "tracker": Tracker,
}
