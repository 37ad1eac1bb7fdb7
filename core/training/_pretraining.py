"""Model builders for the strategies, with optional unsupervised pretraining on the fold's inputs.

A model technique that overrides ``Model.pretrain`` (the autoencoder and the VAE) is built once,
pretrained in this process on the fold's standardised training inputs (no labels), and every call of
the builder returns a fresh module holding those weights: every DDP rank starts from the same state.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..config import TrainConfig
from ..contracts import Model, ModelSpec
from ._training import seed_everything


class Pretrained:
    """A picklable builder: ``model.build(spec)`` with the pretrained weights loaded."""

    def __init__(self, model: Model, spec: ModelSpec, state: dict[str, torch.Tensor]) -> None:
        self.model, self.spec, self.state = model, spec, state

    def __call__(self) -> nn.Module:
        module = self.model.build(self.spec)
        module.load_state_dict(self.state)
        return module


class Fresh:
    """A picklable builder of an untrained ``model.build(spec)``."""

    def __init__(self, model: Model, spec: ModelSpec) -> None:
        self.model, self.spec = model, spec

    def __call__(self) -> nn.Module:
        return self.model.build(self.spec)


def model_builder(
    model: Model, spec: ModelSpec, train_inputs: torch.Tensor, config: TrainConfig
) -> Callable[[], nn.Module]:
    """The builder a strategy calls; pretrains first when the model asks for it."""
    if type(model).pretrain is Model.pretrain:
        return Fresh(model, spec)
    seed_everything(config.seed)
    module = model.build(spec)
    if not model.pretrain(module, train_inputs, config):
        return Fresh(model, spec)
    module.cpu()
    return Pretrained(model, spec, {k: v.detach().clone() for k, v in module.state_dict().items()})
