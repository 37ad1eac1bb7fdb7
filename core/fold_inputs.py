"""A fold's model inputs: the preprocessing fitted on its train rows, applied to both sides.

One place for what ``train-fold`` and the learning curves both need, so that they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .contracts import Dataset, ModelSpec, Preprocessor
from .preprocessing import Fitted, column_maps, fit
from .serving import Standardised


@dataclass
class FoldInputs:
    """Preprocessed inputs (rows, *input_shape) and targets of both sides, the spec and the fitted steps."""

    train: tuple[torch.Tensor, torch.Tensor]
    valid: tuple[torch.Tensor, torch.Tensor]
    spec: ModelSpec
    fitted: Fitted
    #: One row's shape as the model sees it (a one-hot step widens tabular rows).
    input_shape: tuple[int, ...]

    def served(self, model: Any) -> Any:
        """``model`` behind its fold's preprocessing: a torch module on raw feature rows (flat, in feature
        order) when every step is column-wise; else the model and the fitted pipeline together
        (``PipelineModel``), which takes a DataFrame of the raw columns."""
        maps = column_maps(self.fitted)
        if maps is None:
            return PipelineModel(self.fitted, model, self.input_shape)
        return Standardised(model, maps.center, maps.scale, self.input_shape, maps.fill)


@dataclass
class PipelineModel:
    """A model whose preprocessing is not column-wise (one-hot): the fitted scikit-learn pipeline and the
    torch module. ``scores(frame)`` gives class scores (rows, classes) from the raw feature columns."""

    fitted: Fitted
    module: torch.nn.Module
    input_shape: tuple[int, ...]

    def scores(self, frame: Any) -> np.ndarray:
        from .outputs import logits_of

        x = torch.from_numpy(self.fitted.transform(frame)).reshape(len(frame), *self.input_shape)
        self.module.eval()
        with torch.no_grad():
            return logits_of(self.module(x)).numpy()


def fold_inputs(steps: Sequence[Preprocessor], dataset: Dataset, train_rows: np.ndarray,
                valid_rows: np.ndarray) -> FoldInputs:
    """Fit ``steps`` on the train rows' features, transform both sides; targets as class positions."""
    frame = dataset.frame
    fitted = fit(steps, frame.iloc[train_rows], dataset.features)
    x_train, x_valid = fitted.transform(frame.iloc[train_rows]), fitted.transform(frame.iloc[valid_rows])
    shape = tuple(dataset.shape) if fitted.keeps_columns else (x_train.shape[1],)
    counts = np.bincount(dataset.labels(train_rows), minlength=len(dataset.classes))
    spec = ModelSpec(dataset.kind, shape, len(dataset.classes), tuple(map(str, dataset.classes)),
                     tuple(int(c) for c in counts))

    def side(x: np.ndarray, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(x.reshape(len(rows), *shape)), torch.from_numpy(dataset.labels(rows))

    return FoldInputs(side(x_train, train_rows), side(x_valid, valid_rows), spec, fitted, shape)
