"""The ``top_k_accuracy`` metric."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scribbles.core import Metric, Technique, hookimpl

SCRIBBLES_API_VERSION = 1


class TopKAccuracy(Metric):
    """The share of rows whose true class is among the k most probable ones."""

    name = "top_k_accuracy"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        k: int = Field(2, ge=1)

    def compute(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        top = np.argsort(-proba, axis=1, kind="stable")[:, : self.params.k]
        return float(np.mean((top == np.asarray(y_true)[:, None]).any(axis=1)))


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [TopKAccuracy]
