"""Representation models: ``autoencoder`` and ``vae``, whose encoder feeds a classifier head.

With ``pretrain: N`` (epochs, default 5) the model first learns to reconstruct the fold's training
inputs with no labels (its ``objective``: reconstruction error, or the negative ELBO for ``vae``), then
hands its encoder to the classifier that the configured loss trains; ``freeze: true`` keeps the
pretrained encoder fixed while the classifier learns. The outputs carry ``reconstruction`` (scored by
the ``reconstruction_mse`` metric) and ``objective`` (what the ``reconstruction`` loss minimises).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import torch
from pydantic import BaseModel, ConfigDict, Field
from scribbles.core import Model, ModelSpec, Technique, TrainConfig, Width, hookimpl
from scribbles.core.evaluation import output_of
from scribbles.core.training import train_single
from torch import nn


def mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    """Linear layers of ``sizes`` with ReLU (and dropout) between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


def kl_standard_normal(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)) per row, in closed form: 0.5 sum(mu^2 + s^2 - log s^2 - 1)."""
    return 0.5 * (mean.pow(2) + log_var.exp() - log_var - 1).sum(-1)


class AutoencoderNet(nn.Module):
    """Encoder to a bottleneck, decoder back to the inputs, and a class head on the bottleneck."""

    def __init__(self, n_inputs: int, hidden: list[int], latent: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.encoder = mlp([n_inputs, *hidden, self.code_width(latent)], dropout)
        self.decoder = mlp([latent, *reversed(hidden), n_inputs], dropout)
        self.head = nn.Linear(latent, n_classes)
        # A buffer, not an attribute, so that a frozen encoder stays frozen in copies of the state.
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))

    def code_width(self, latent: int) -> int:
        return latent

    def encode(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(flat)
        return {"embedding": z, "code": z}

    def objective(self, flat: torch.Tensor, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean squared reconstruction error."""
        return (parts["reconstruction"] - flat).pow(2).mean()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = x.flatten(1)
        parts = self.encode(flat)
        parts["reconstruction"] = self.decoder(parts.pop("code"))
        embedding = parts["embedding"].detach() if bool(self.frozen) else parts["embedding"]
        parts["logits"] = self.head(embedding)
        parts["objective"] = self.objective(flat, parts)
        return parts


class VAENet(AutoencoderNet):
    """The encoder outputs a mean and a log-variance; the code is sampled by reparameterisation."""

    def __init__(self, n_inputs: int, hidden: list[int], latent: int, n_classes: int, dropout: float,
                 beta: float) -> None:
        super().__init__(n_inputs, hidden, latent, n_classes, dropout)
        self.latent, self.beta = latent, beta

    def code_width(self, latent: int) -> int:
        return 2 * latent

    def encode(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        mean, log_var = self.encoder(flat).chunk(2, dim=-1)
        log_var = log_var.clamp(-10, 10)
        # z = mean + sigma * eps: the randomness sits in eps, so gradients flow through mean and sigma.
        code = mean + (0.5 * log_var).exp() * torch.randn_like(mean) if self.training else mean
        return {"embedding": mean, "code": code, "mean": mean, "log_var": log_var}

    def objective(self, flat: torch.Tensor, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """The negative ELBO per input value: (0.5 ||x - x'||^2 + beta KL) / inputs, averaged over rows.

        0.5 ||x - x'||^2 is -log p(x | z) of a unit-variance Gaussian decoder, up to a constant.
        """
        reconstruction = 0.5 * (parts["reconstruction"] - flat).pow(2).sum(-1)
        kl = kl_standard_normal(parts["mean"], parts["log_var"])
        return (reconstruction + self.beta * kl).mean() / flat.shape[1]


class _Objective(nn.Module):
    """The loss of the pretraining phase: the model's own objective, labels unused."""

    def forward(self, outputs: dict[str, torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return output_of(outputs, "objective", "pretraining")


class _Representation(Model):
    outputs = frozenset({"logits", "embedding", "reconstruction", "objective"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        hidden: list[Width] = Field(default_factory=lambda: [128])
        latent: int = Field(16, ge=1, description="bottleneck width")
        dropout: float = Field(0.0, ge=0, lt=1)
        pretrain: int = Field(5, ge=0, description="epochs of reconstruction-only training first; 0: none")
        freeze: bool = Field(False, description="keep the pretrained encoder fixed while the classifier learns")

    def pretrain(self, module: nn.Module, inputs: torch.Tensor, config: TrainConfig) -> bool:
        """Train ``module`` on its own objective for ``pretrain`` epochs, with the strategy's settings."""
        if not self.params.pretrain:
            return False
        unlabelled = torch.zeros(len(inputs), dtype=torch.long)
        phase = config.model_copy(update={"epochs": self.params.pretrain})
        train_single(module, _Objective(), (inputs, unlabelled), (inputs[:0], unlabelled[:0]), phase)
        if self.params.freeze:
            module.frozen.fill_(True)
        return True


class Autoencoder(_Representation):
    """An autoencoder: encoder to a bottleneck and decoder back; its encoder feeds a classifier."""

    name = "autoencoder"

    def build(self, spec: ModelSpec) -> nn.Module:
        p = self.params
        return AutoencoderNet(math.prod(spec.input_shape), p.hidden, p.latent, spec.n_classes, p.dropout)


class VAE(_Representation):
    """A variational autoencoder: mean and log-variance, reparameterised code, ELBO with beta * KL."""

    name = "vae"
    outputs = frozenset({*_Representation.outputs, "mean", "log_var"})

    class Params(_Representation.Params):
        beta: float = Field(1.0, ge=0, description="weight of the KL term of the ELBO")

    def build(self, spec: ModelSpec) -> nn.Module:
        p = self.params
        return VAENet(math.prod(spec.input_shape), p.hidden, p.latent, spec.n_classes, p.dropout, p.beta)


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [Autoencoder, VAE]
