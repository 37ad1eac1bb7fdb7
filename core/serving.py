"""What a trained torch model needs to be served on raw feature rows: its input shape and standardisation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .outputs import logits_of


class Standardised(nn.Module):
    """``logits(model((x - mean) / std))``: a fold's model on raw feature rows, as a user has them.

    Input: raw feature values, either flat rows (rows, n_features) in feature-column order, as read
    from the data file, or rows already in the model's input shape (rows, *shape). Output: class
    scores (logits), float32 of shape (rows, classes); ``softmax(-1)`` gives the class probabilities.
    A model that returns named outputs (a mapping with ``logits``, see ``scribbles.core.outputs``) is
    served by its ``logits``: that is what the evaluator scores.

    The flow standardises inputs with the statistics of a fold's training rows; a logged model that
    expected standardised inputs would silently give wrong answers on raw data.
    """

    def __init__(self, model: nn.Module, mean: float, std: float, shape: Sequence[int] = ()) -> None:
        super().__init__()
        self.model = model
        self.shape = tuple(int(s) for s in shape)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shape and x.dim() == 2 and len(self.shape) > 1:
            x = x.reshape(len(x), *self.shape)  # flat rows, as in the data file
        return logits_of(self.model((x.float() - self.mean) / self.std))


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
