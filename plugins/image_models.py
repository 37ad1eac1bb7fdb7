"""Image models: ``cnn``, a small convolutional network for (channels, height, width) rows.

Kept apart from plugins/models.py (the tabular and sequence models) so that image models grow here.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from pydantic import BaseModel, ConfigDict, Field
from scribbles.core import Model, ModelSpec, Technique, hookimpl
from torch import nn


class SmallConvNet(nn.Module):
    """3x3 convolutions (same padding) with ReLU, global average pooling, then a linear head.

    Global pooling makes the features nearly translation invariant, which is what shift TTA averages
    over; no striding keeps it usable on images as small as 8x8.
    """

    def __init__(self, in_channels: int, channels: list[int], n_classes: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for size in channels:
            layers += [nn.Conv2d(width, size, 3, padding=1), nn.ReLU()]
            width = size
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * width, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.features(x)
        # Mean and max pooling: the mean keeps how much of a stroke there is, the max where it peaks.
        return self.head(torch.cat([maps.mean((-2, -1)), maps.amax((-2, -1))], dim=-1))


class CNN(Model):
    """A small convolutional network for images of shape [channels, height, width]."""

    name = "cnn"
    kinds = frozenset({"image"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        channels: list[int] = Field(default_factory=lambda: [16, 32], min_length=1)
        dropout: float = Field(0.1, ge=0, lt=1)

    def build(self, spec: ModelSpec) -> nn.Module:
        return SmallConvNet(spec.input_shape[0], self.params.channels, spec.n_classes, self.params.dropout)


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [CNN]
