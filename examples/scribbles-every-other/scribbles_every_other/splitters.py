"""The ``every_other`` splitter, as on scribbles' design page."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scribbles.core import Dataset, Fold, Splitter, Technique, hookimpl

#: The scribbles plugin API this module is written for.
SCRIBBLES_API_VERSION = 1


class EveryOther(Splitter):
    """Alternate rows between folds: row i validates in fold (i + offset) % n_splits."""

    name = "every_other"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        n_splits: int = Field(2, ge=2)
        offset: int = Field(0, ge=0)

    def split(self, dataset: Dataset) -> Iterator[Fold]:
        fold_of_row = (np.arange(len(dataset)) + self.params.offset) % self.params.n_splits
        for index in range(self.params.n_splits):
            yield Fold(index, np.flatnonzero(fold_of_row != index), np.flatnonzero(fold_of_row == index))


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [EveryOther]
