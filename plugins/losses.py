"""Losses: ``cross_entropy`` (with label smoothing)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from pydantic import BaseModel, ConfigDict, Field
from scribbles.core import Loss, ModelSpec, Technique, hookimpl
from torch import nn


class _CrossEntropy(nn.Module):
    def __init__(self, label_smoothing: float) -> None:
        super().__init__()
        self.inner = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(self, outputs: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.inner(outputs, batch[1])


class CrossEntropy(Loss):
    """Cross-entropy on class logits, with optional label smoothing."""

    name = "cross_entropy"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        label_smoothing: float = Field(0.0, ge=0, lt=1)

    def build(self, spec: ModelSpec) -> nn.Module:
        return _CrossEntropy(self.params.label_smoothing)


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [CrossEntropy]
