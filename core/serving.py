"""What a trained torch model needs to be served on raw features: the standardisation it was trained with."""

from __future__ import annotations

import torch
from torch import nn


class Standardised(nn.Module):
    """``model((x - mean) / std)``: a fold's model that takes raw feature values, as a user has them.

    The flow standardises inputs with the statistics of a fold's training rows; a logged model that
    expects standardised inputs would silently give wrong answers on raw data.
    """

    def __init__(self, model: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)
