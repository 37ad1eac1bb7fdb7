"""What a trained torch model needs to be served on raw feature rows: its input shape and preprocessing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ._outputs import logits_of


class Standardised(nn.Module):
    """``logits(model((fill(x) - center) / scale))``: a fold's model on raw feature rows, as a user has them.

    Input: raw feature values, either flat rows (rows, n_features) in feature-column order, as read from
    the data file, or rows already in the model's input shape (rows, *shape). Output: class scores
    (logits), float32 of shape (rows, classes); ``softmax(-1)`` gives the class probabilities. A model
    that returns named outputs (a mapping with ``logits``, see ``scribbles.core.evaluation.output_of``) is served by
    its ``logits``: that is what the evaluator scores.

    ``mean`` and ``std`` (the center and scale) are one number or one per feature column; ``fill`` gives,
    per column, the raw value a missing (NaN) entry takes (NaN: none), as the fold's fitted
    preprocessing does (see ``scribbles.core.data.column_maps``). A logged model that expected
    preprocessed inputs would silently give wrong answers on raw data.
    """

    def __init__(self, model: nn.Module, mean: float | Sequence[float] | np.ndarray,
                 std: float | Sequence[float] | np.ndarray, shape: Sequence[int] = (),
                 fill: Sequence[float] | np.ndarray | None = None) -> None:
        super().__init__()
        self.model = model
        self.shape = tuple(int(s) for s in shape)
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, dtype=np.float32)))
        self.register_buffer("std", torch.as_tensor(np.asarray(std, dtype=np.float32)))
        fill_values = np.asarray([] if fill is None else fill, dtype=np.float32)
        self.register_buffer("fill", torch.as_tensor(fill_values))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.float().reshape(len(x), -1)  # flat rows, in feature-column order
        if self.fill.numel():
            rows = torch.where(torch.isnan(rows) & ~torch.isnan(self.fill), self.fill, rows)
        rows = (rows - self.mean) / self.std
        shaped = rows.reshape(len(x), *self.shape) if self.shape else rows.reshape(x.shape)
        return logits_of(self.model(shaped))


class Ensemble(nn.Module):
    """The fold models of a run as one model: ``log(mean_k softmax(member_k(x)))``.

    The members' class probabilities are averaged with equal weight (each fold model saw a different
    (k-1)/k of the rows); the output is the log of that average, so ``softmax(-1)`` of it gives the
    averaged probabilities back and ``argmax`` the ensemble's class, as for any served model here.
    Input: raw feature rows, as each member (``Standardised``) takes them.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member model")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([logits_of(member(x)).float().softmax(-1) for member in self.members]).mean(0)
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
