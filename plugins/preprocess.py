"""Preprocessing steps, fitted on each fold's train rows only: ``standard``, ``robust``, ``impute``, ``one_hot``.

Each wraps one scikit-learn transformer (``StandardScaler``, ``RobustScaler``, ``SimpleImputer``,
``OneHotEncoder``); the flow chains the configured steps, each on its columns, in a scikit-learn
``Pipeline`` of ``ColumnTransformer`` steps (see ``scribbles.core.data``). scikit-learn is
imported inside ``transformer()``: the registry loads without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from scribbles.core import Preprocessor, Technique, hookimpl


class _Columns(BaseModel):
    model_config = ConfigDict(extra="forbid")

    columns: list[str] | None = Field(None, description="feature columns; default every column of its kind")


class Standard(Preprocessor):
    """Per-column standard scaling: (x - mean) / std of the fold's train rows (scikit-learn StandardScaler)."""

    name = "standard"
    Params = _Columns

    def transformer(self) -> Any:
        from sklearn.preprocessing import StandardScaler

        return StandardScaler()


class Robust(Preprocessor):
    """Per-column robust scaling: (x - median) / IQR of the train rows, for heavy-tailed columns (RobustScaler)."""

    name = "robust"
    Params = _Columns

    def transformer(self) -> Any:
        from sklearn.preprocessing import RobustScaler

        return RobustScaler()


class Impute(Preprocessor):
    """Missing values filled per column from the train rows: mean, median, most frequent or a constant."""

    name = "impute"

    class Params(_Columns):
        strategy: Literal["mean", "median", "most_frequent", "constant"] = "median"
        fill_value: float | str | None = Field(
            None, description="the value for strategy constant; default 0 for numbers, 'missing_value' for text")

    def column_problem(self, kind: str) -> str | None:
        fill = self.params.fill_value
        if kind == "numeric" and self.params.strategy == "constant" and isinstance(fill, str):
            return f"impute fill_value {fill!r} is text; a numeric column needs a number (or name the text columns)"
        if kind == "numeric" or self.params.strategy in ("most_frequent", "constant"):
            return None
        return (f"impute strategy {self.params.strategy} needs numbers; for text use strategy: most_frequent or "
                "constant, or leave it to one_hot (a missing value becomes a category of its own)")

    def transformer(self) -> Any:
        from sklearn.impute import SimpleImputer

        return SimpleImputer(strategy=self.params.strategy, fill_value=self.params.fill_value,
                             keep_empty_features=True)


class OneHot(Preprocessor):
    """One 0/1 column per category of string, boolean or categorical columns (OneHotEncoder); a category
    unseen in the train rows encodes as all zeros."""

    name = "one_hot"
    dtypes: ClassVar[frozenset[str]] = frozenset({"categorical"})
    keeps_columns: ClassVar[bool] = False
    Params = _Columns

    def column_problem(self, kind: str) -> str | None:
        return None  # numbers that code categories (1, 2, 3) are categories too

    def transformer(self) -> Any:
        from sklearn.preprocessing import OneHotEncoder

        return OneHotEncoder(handle_unknown="ignore", sparse_output=False)


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [Standard, Robust, Impute, OneHot]
