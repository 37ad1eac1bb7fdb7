"""Image models: ``cnn``, a small convolutional network for (channels, height, width) rows.

Kept apart from plugins/models.py (the tabular and sequence models) so that image models grow here.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from pydantic import BaseModel, ConfigDict, Field
from scribbles.core import Model, ModelSpec, Technique, Width, hookimpl
from torch import nn


class RandomShift(nn.Module):
    """Move each training image by a random (dy, dx) in [-pixels, pixels], repeating the border; off in eval.

    Training on shifted copies is what makes shift TTA pay at test time: the model learns that a digit
    one pixel to the left is the same digit, so averaging over shifted views removes noise instead of
    adding views the model has never seen.
    """

    def __init__(self, pixels: int) -> None:
        super().__init__()
        self.pixels = pixels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.pixels == 0:
            return x
        n, _, height, width = x.shape
        offsets = torch.randint(-self.pixels, self.pixels + 1, (2, n, 1), device=x.device)
        rows = (torch.arange(height, device=x.device) - offsets[0]).clamp(0, height - 1)  # (n, height)
        cols = (torch.arange(width, device=x.device) - offsets[1]).clamp(0, width - 1)  # (n, width)
        index = torch.arange(n, device=x.device)[:, None, None, None]
        channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        return x[index, channel, rows[:, None, :, None], cols[:, None, None, :]]


class SmallConvNet(nn.Module):
    """3x3 convolutions (same padding) with ReLU, global average pooling, then a linear head.

    Global pooling makes the features nearly translation invariant, which is what shift TTA averages
    over; no striding keeps it usable on images as small as 8x8.
    """

    def __init__(
        self, in_channels: int, channels: list[int], n_classes: int, dropout: float, train_shift: int = 0
    ) -> None:
        super().__init__()
        self.augment = RandomShift(train_shift)
        layers: list[nn.Module] = []
        width = in_channels
        for size in channels:
            layers += [nn.Conv2d(width, size, 3, padding=1), nn.ReLU()]
            width = size
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * width, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.features(self.augment(x))
        # Mean and max pooling: the mean keeps how much of a stroke there is, the max where it peaks.
        return self.head(torch.cat([maps.mean((-2, -1)), maps.amax((-2, -1))], dim=-1))


class CNN(Model):
    """A small convolutional network for images of shape [channels, height, width]."""

    name = "cnn"
    kinds = frozenset({"image"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        channels: list[Width] = Field(default_factory=lambda: [16, 32], min_length=1)
        dropout: float = Field(0.1, ge=0, lt=1)
        train_shift: int = Field(0, ge=0, description="random shifts of up to this many pixels while training")

    def build(self, spec: ModelSpec) -> nn.Module:
        p = self.params
        return SmallConvNet(spec.input_shape[0], p.channels, spec.n_classes, p.dropout, p.train_shift)


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [CNN]
