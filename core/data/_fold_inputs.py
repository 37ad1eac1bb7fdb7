"""A fold's model inputs: the preprocessing fitted on its train rows, applied to both sides.

One place for what ``train-fold`` and the learning curves both need, so that they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..contracts import Dataset, ModelSpec, Preprocessor
from ._preprocessing import Fitted, column_maps, fit
from ..evaluation import Standardised


@dataclass
class FoldInputs:
    """Preprocessed inputs (rows, *input_shape) and targets of both sides, the spec and the fitted steps."""

    train: tuple[torch.Tensor, torch.Tensor]
    valid: tuple[torch.Tensor, torch.Tensor]
    spec: ModelSpec
    fitted: Fitted
    #: One row's shape as the model sees it (a one-hot step widens tabular rows).
    input_shape: tuple[int, ...]
    #: Regression: the model learns (y - center) / scale, with the train targets' mean and std (as
    #: scikit-learn's TransformedTargetRegressor with a StandardScaler); 0 and 1 for classification.
    target_center: float = 0.0
    target_scale: float = 1.0

    def in_target_units(self, model: Any) -> Any:
        """The trained model giving predictions in the target's units (regression); the model itself else."""
        if self.spec.task != "regression":
            return model
        return TargetScaled(model, self.target_center, self.target_scale)

    def serving(self) -> dict[str, Any]:
        """What ``served`` needs, as plain values (JSON): per-column ``mean``, ``std`` and ``fill`` when every
        step is column-wise, else ``pipeline: true`` (the fitted pipeline travels on its own); the row
        ``shape``; the regression ``target`` scaling, or None."""
        target = [self.target_center, self.target_scale] if self.spec.task == "regression" else None
        maps = column_maps(self.fitted)
        if maps is None:
            return {"pipeline": True, "shape": list(self.input_shape), "target": target}
        return {"mean": maps.center.tolist(), "std": maps.scale.tolist(), "fill": maps.fill.tolist(),
                "shape": list(self.input_shape), "target": target}

    def served(self, model: Any) -> Any:
        """``model`` behind its fold's preprocessing: a torch module on raw feature rows (flat, in feature
        order) when every step is column-wise; else the model and the fitted pipeline together
        (``PipelineModel``), which takes a DataFrame of the raw columns."""
        return served(model, self.serving(), self.fitted)


class TargetScaled(torch.nn.Module):
    """``model(x) * scale + center``: a regression model trained on standardised targets, in target units."""

    def __init__(self, model: torch.nn.Module, center: float, scale: float) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("center", torch.tensor(float(center)))
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from ..evaluation import logits_of

        return logits_of(self.model(x)) * self.scale + self.center


@dataclass
class PipelineModel:
    """A model whose preprocessing is not column-wise (one-hot): the fitted scikit-learn pipeline and the
    torch module. ``scores(frame)`` gives class scores (rows, classes) from the raw feature columns."""

    fitted: Fitted
    module: torch.nn.Module
    input_shape: tuple[int, ...]

    def scores(self, frame: Any) -> np.ndarray:
        from ..evaluation import logits_of

        x = torch.from_numpy(self.fitted.transform(frame)).reshape(len(frame), *self.input_shape)
        self.module.eval()
        with torch.no_grad():
            return logits_of(self.module(x)).numpy()


def targets(dataset: Dataset, rows: np.ndarray, task: str) -> np.ndarray:
    """Class positions (int64) for classification; the target's values (float32) for regression."""
    if task == "regression":
        return dataset.frame[dataset.target].to_numpy(dtype=np.float32)[rows]
    return dataset.labels(rows)


def fold_inputs(steps: Sequence[Preprocessor], dataset: Dataset, train_rows: np.ndarray,
                valid_rows: np.ndarray, task: str = "classification") -> FoldInputs:
    """Fit ``steps`` on the train rows' features, transform both sides; targets as ``targets`` gives them."""
    frame = dataset.frame
    fitted = fit(steps, frame.iloc[train_rows], dataset.features)
    x_train, x_valid = fitted.transform(frame.iloc[train_rows]), fitted.transform(frame.iloc[valid_rows])
    shape = tuple(dataset.shape) if fitted.keeps_columns else (x_train.shape[1],)
    center, scale = 0.0, 1.0
    if task == "regression":
        spec = ModelSpec(dataset.kind, shape, 1, (), (), task)
        y = targets(dataset, train_rows, task)
        center, scale = float(y.mean()), float(y.std()) or 1.0
    else:
        counts = np.bincount(dataset.labels(train_rows), minlength=len(dataset.classes))
        spec = ModelSpec(dataset.kind, shape, len(dataset.classes), tuple(map(str, dataset.classes)),
                         tuple(int(c) for c in counts), task)

    def side(x: np.ndarray, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        y = targets(dataset, rows, task)
        if task == "regression":
            y = ((y - center) / scale).astype(np.float32)
        return torch.from_numpy(x.reshape(len(rows), *shape)), torch.from_numpy(y)

    return FoldInputs(side(x_train, train_rows), side(x_valid, valid_rows), spec, fitted, shape, center, scale)


def served(module: torch.nn.Module, serving: dict[str, Any], fitted: Fitted | None = None) -> Any:
    """A trained module (predicting standardised targets, for regression) behind what ``serving`` describes:
    target units restored, then the per-column maps (``Standardised``) or the fitted pipeline
    (``PipelineModel``, which needs ``fitted``)."""
    if serving.get("target"):
        module = TargetScaled(module, *serving["target"])
    shape = tuple(serving.get("shape") or ())
    if serving.get("pipeline"):
        if fitted is None:
            raise ValueError("a model behind a one-hot pipeline needs the fitted pipeline")
        return PipelineModel(fitted, module, shape)
    return Standardised(module, serving["mean"], serving["std"], shape, serving.get("fill"))
