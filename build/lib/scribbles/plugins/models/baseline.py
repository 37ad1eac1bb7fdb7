"""Neural models: ``mlp`` (any data, flattened) and ``gru`` (sequences)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from pydantic import BaseModel, ConfigDict, Field
from scribbles.core import Model, ModelSpec, Technique, Width, hookimpl
from torch import nn


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MLP(Model):
    """A multilayer perceptron on the flattened features; the tabular default."""

    name = "mlp"

    class Params(_Params):
        hidden: list[Width] = Field(default_factory=lambda: [128, 64])
        dropout: float = Field(0.1, ge=0, lt=1)

    def build(self, spec: ModelSpec) -> nn.Module:
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(spec.input_shape)
        for size in self.params.hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(self.params.dropout)]
            width = size
        layers.append(nn.Linear(width, spec.n_classes))
        return nn.Sequential(*layers)


class GRUClassifier(nn.Module):
    """A GRU over (batch, steps, channels), classified from the mean and last hidden states."""

    def __init__(self, channels: int, hidden: int, layers: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.gru = nn.GRU(channels, hidden, num_layers=layers, batch_first=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(x)
        return self.head(torch.cat([states.mean(1), states[:, -1]], dim=-1))


class GRU(Model):
    """A recurrent network (GRU) for sequences of shape [steps, channels]."""

    name = "gru"
    kinds = frozenset({"sequence"})

    class Params(_Params):
        hidden: int = Field(48, ge=1)
        layers: int = Field(1, ge=1)
        dropout: float = Field(0.1, ge=0, lt=1)

    def build(self, spec: ModelSpec) -> nn.Module:
        _, channels = spec.input_shape
        return GRUClassifier(channels, self.params.hidden, self.params.layers, spec.n_classes,
                             self.params.dropout)


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [MLP, GRU]
