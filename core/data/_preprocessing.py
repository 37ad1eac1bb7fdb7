"""The configured preprocessing steps as one scikit-learn pipeline, fitted on a fold's train rows only.

Each step becomes a ``ColumnTransformer`` that applies the step's transformer to its columns (named, or
picked by kind with ``make_column_selector``) and passes the others through, with pandas output so that
later steps see column names; the steps are chained in a ``Pipeline`` in config order. The statistics
come from the rows ``fit`` is given (a fold's train rows): a valid row cannot move them.

A pipeline of column-wise numeric steps (scaling, imputation) is also an exact per-column
``fill`` / ``(x - center) / scale`` map, which :func:`column_maps` extracts so that the logged torch
model applies it itself on raw feature rows (``scribbles.core.evaluation.Standardised``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..contracts import Dataset, Preprocessor
from ..errors import BadInput

#: What a config without a ``preprocess`` section gets: per-column standard scaling of numeric features.
DEFAULT_STEPS: tuple[dict[str, Any], ...] = ({"name": "standard"},)


def is_numeric(column: pd.Series) -> bool:
    """Numbers (not booleans): what scalers and the model take as they are."""
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _selector(step: Preprocessor) -> Any:
    from sklearn.compose import make_column_selector

    named = step.columns()
    if named is not None:
        return list(named)
    if step.dtypes == frozenset({"numeric"}):
        return make_column_selector(dtype_include=np.number)
    if step.dtypes == frozenset({"categorical"}):
        return make_column_selector(dtype_exclude=np.number)
    return make_column_selector()


def check_steps(steps: Sequence[Preprocessor], dataset: Dataset) -> None:
    """BadInput, before any work, when the steps cannot turn the features into finite numbers.

    Named columns must be features; string or categorical features need a step that encodes them; missing
    values need an ``impute`` step that reaches them; sequence and image rows keep their shape, so a step
    that changes the column count (one-hot) applies to tabular data only.
    """
    frame, features = dataset.frame, dataset.features
    replaced: dict[str, int] = {}  # columns an earlier step (one-hot) turned into others
    for i, step in enumerate(steps):
        named = step.columns() or []
        unknown = [c for c in named if c not in features]
        if unknown:
            raise BadInput(f"preprocess.{i}.columns: {', '.join(map(repr, unknown[:5]))} are not feature columns; "
                           f"features: {', '.join(features[:12])}{' ...' if len(features) > 12 else ''}")
        gone = [c for c in named if c in replaced]
        if gone:
            raise BadInput(f"preprocess.{i}.columns: {gone[0]!r} was already encoded by preprocess.{replaced[gone[0]]} "
                           f"({steps[replaced[gone[0]]].name}); a later step cannot name it. Remove one of the two")
        kind_of = {c: "numeric" if is_numeric(frame[c]) else "categorical" for c in features}
        applied = named or [c for c in features if kind_of[c] in step.dtypes and c not in replaced]
        for column in applied:
            problem = step.column_problem(kind_of[column])
            if problem:
                kind = "numbers" if is_numeric(frame[column]) else "text"
                where = f"preprocess.{i}.columns" if named else f"preprocess.{i}"
                raise BadInput(f"{where}: {column!r} holds {kind}; {problem}")
        if not step.keeps_columns:
            replaced.update({c: i for c in named or [c for c in features if not is_numeric(frame[c])]})
        if not step.keeps_columns and dataset.kind != "tabular":
            raise BadInput(f"preprocess.{i}: '{step.name}' changes the number of columns, which {dataset.kind} "
                           f"rows of shape {list(dataset.shape)} cannot take; use it on tabular data")

    def covered(column: str, kinds: frozenset[str], what: Any) -> bool:
        return any(what(step) and (column in (step.columns() or []) or
                                   (step.columns() is None and bool(step.dtypes & kinds))) for step in steps)

    text = [c for c in features if not is_numeric(frame[c])]
    unencoded = [c for c in text if not covered(c, frozenset({"categorical"}), lambda s: not s.keeps_columns)]
    if unencoded:
        raise BadInput(_unencoded(frame, unencoded))
    # A text column's missing values are a category of their own once it is encoded (one-hot gives them a
    # column); a numeric column's need an imputer that reaches it.
    holes = [c for c in features if frame[c].isna().any() and is_numeric(frame[c])]
    unfilled = [c for c in holes if not covered(c, frozenset({"numeric"}), lambda s: s.name == "impute")]
    if unfilled:
        row = int(frame[unfilled[0]].isna().to_numpy().argmax())
        empty = [c for c in unfilled if frame[c].isna().all()]
        if empty:
            raise BadInput(f"data.features: {_listed(empty)} {_verb(empty, 'holds', 'hold')} no value on any row; "
                           f"leave {_verb(empty, 'it', 'them')} out of data.features")
        raise BadInput(f"data.features: {_listed(unfilled)} {_verb(unfilled, 'has', 'have')} missing values (e.g. "
                       f"row {row}); fill them per fold with `preprocess: [{{name: impute}}, {{name: standard}}]` "
                       "(before any one_hot step), or drop those rows")


def _listed(columns: list[str], most: int = 5) -> str:
    return ", ".join(columns[:most]) + (f" and {len(columns) - most} more" if len(columns) > most else "")


def _verb(columns: list[str], one: str, many: str) -> str:
    return one if len(columns) == 1 else many


def _unencoded(frame: pd.DataFrame, columns: list[str]) -> str:
    """Why text ``columns`` cannot be features as they are, and the fix: one-hot for categories; an
    identifier (a value of its own on most rows) or dates are left out (dates name ``data.time``)."""
    rows = len(frame)
    dates = [c for c in columns if _dates(frame[c])]
    ids = [c for c in columns if c not in dates and rows >= 20 and frame[c].nunique() > rows / 2]
    categories = [c for c in columns if c not in ids and c not in dates]
    fixes = []
    if categories:
        fixes.append(f"encode {_listed(categories)} with `preprocess: [{{name: one_hot, columns: "
                     f"[{', '.join(categories)}]}}, {{name: standard}}]`")
    if ids:
        fixes.append(f"leave out {_listed(ids)} (a different value on most rows: an identifier, not a feature)")
    if dates:
        fixes.append(f"leave out {_listed(dates)} (dates: name one data.time for time splits)")
    return (f"data.features: {_listed(columns)} {_verb(columns, 'is', 'are')} not numeric; {'; '.join(fixes)}; or "
            "list the features you want in data.features")


def _dates(column: pd.Series) -> bool:
    """Whether a text column holds dates (its first values parse as dates)."""
    import warnings

    sample = column.dropna().astype(str).head(20)
    if sample.empty or not sample.str.contains(r"\d").all():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns when it guesses the format per value
        return bool(pd.to_datetime(sample, errors="coerce").notna().all())


@dataclass
class Fitted:
    """A fitted preprocessing pipeline: raw feature columns in, float32 model inputs out."""

    pipeline: Any
    features: list[str]
    #: Whether every step keeps one column per feature (the output is then in feature order).
    keeps_columns: bool

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Model inputs (rows, outputs) as float32 from the raw feature columns of ``frame``."""
        out = self.pipeline.transform(frame[self.features])
        if self.keeps_columns:
            out = out[self.features]  # ColumnTransformer puts the transformed columns first
        return np.ascontiguousarray(out.to_numpy(dtype=np.float32))


def fit(steps: Sequence[Preprocessor], frame: pd.DataFrame, features: list[str]) -> Fitted:
    """The steps chained and fitted on ``frame`` (a fold's train rows)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    stages = [
        (f"{i}_{step.name}", ColumnTransformer([(step.name, step.transformer(), _selector(step))],
                                                remainder="passthrough", verbose_feature_names_out=False)
         .set_output(transform="pandas"))
        for i, step in enumerate(steps)
    ]
    if not stages:
        stages = [("identity", ColumnTransformer([], remainder="passthrough", verbose_feature_names_out=False)
                   .set_output(transform="pandas"))]
    pipeline = Pipeline(stages).fit(frame[features])
    return Fitted(pipeline, list(features), all(step.keeps_columns for step in steps))


@dataclass
class ColumnMaps:
    """Per feature column, in order: the raw value a missing one takes, then ``(x - center) / scale``."""

    fill: np.ndarray
    center: np.ndarray
    scale: np.ndarray


def column_maps(fitted: Fitted) -> ColumnMaps | None:
    """The fitted pipeline as per-column maps, or None when a step is not column-wise (one-hot, say).

    Each column's map so far is ``a * x + b``; a scaler with (center c, scale s) makes it
    ``(a * x + b - c) / s``; an imputer's value v for a missing entry is the raw value ``(v - b) / a``.
    """
    n = len(fitted.features)
    index = {c: j for j, c in enumerate(fitted.features)}
    a, b = np.ones(n), np.zeros(n)
    fill = np.full(n, np.nan)
    for _, stage in fitted.pipeline.steps:
        for name, transformer, columns in stage.transformers_:
            if name == "remainder" or transformer in ("drop", "passthrough") or not len(columns):
                continue
            positions = [index[c] for c in columns]
            kind = type(transformer).__name__
            if kind == "StandardScaler":
                center = transformer.mean_ if transformer.with_mean else np.zeros(len(positions))
                scale = transformer.scale_ if transformer.with_std else np.ones(len(positions))
            elif kind == "RobustScaler":
                center, scale = transformer.center_, transformer.scale_
            elif kind == "SimpleImputer":
                try:
                    values = np.asarray(transformer.statistics_, dtype=np.float64)
                except (TypeError, ValueError):
                    return None  # a text column's fill (its most frequent category): only the pipeline maps it
                for j, v in zip(positions, values, strict=True):
                    if np.isnan(fill[j]):
                        fill[j] = (v - b[j]) / a[j]
                continue
            else:
                return None
            for j, c, s in zip(positions, center, scale, strict=True):
                a[j], b[j] = a[j] / s, (b[j] - c) / s
    return ColumnMaps(fill=fill, center=-b / a, scale=1 / a)
