"""Losses: ``cross_entropy`` (label smoothing), ``supcon`` (supervised contrastive), ``ctc`` (sequence
labelling) and ``reconstruction`` (a representation model's own objective plus cross-entropy).

A loss module is called as ``loss(outputs, batch)`` with ``batch = (inputs, targets)``; ``outputs`` is
a logits tensor or a mapping of named outputs (see ``scribbles.core.evaluation``), and ``needs`` names
the outputs a loss reads, so that a model lacking one is refused before any work.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from scribbles.core import BadInput, Loss, ModelSpec, Technique, hookimpl
from scribbles.core.evaluation import logits_of, output_of
from torch import nn


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _CrossEntropy(nn.Module):
    def __init__(self, label_smoothing: float, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.inner = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)

    def forward(self, outputs: Any, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.inner(logits_of(outputs), batch[1])


class CrossEntropy(Loss):
    """Cross-entropy on class logits, with optional label smoothing."""

    name = "cross_entropy"

    class Params(_Params):
        label_smoothing: float = Field(0.0, ge=0, lt=1)
        class_weight: Literal["balanced"] | list[float] | None = Field(
            None, description="'balanced': n_rows / (n_classes * rows of the class), from the fold's train rows "
                              "(scikit-learn's compute_class_weight); or one weight per class")

    def build(self, spec: ModelSpec) -> nn.Module:
        return _CrossEntropy(self.params.label_smoothing, class_weights(self.params.class_weight, spec))


def class_weights(how: str | list[float] | None, spec: ModelSpec) -> torch.Tensor | None:
    """Per-class loss weights: None, 'balanced' from the spec's train class counts, or as given."""
    if how is None:
        return None
    if how == "balanced":
        counts = torch.tensor(spec.class_counts or [1] * spec.n_classes, dtype=torch.float32)
        # A class absent from the train rows gets weight 0 rather than a division by zero.
        weights = counts.sum() / (len(counts) * counts.clamp_min(1))
        return torch.where(counts > 0, weights, torch.zeros_like(weights))
    if len(how) != spec.n_classes:
        raise BadInput(f"loss.class_weight: {len(how)} weights for {spec.n_classes} classes; give one per class "
                       "in class order, or 'balanced'")
    return torch.tensor(how, dtype=torch.float32)


# ---------------------------------------------------------------- supervised contrastive


def supcon_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) of L2-normalised embeddings.

    For each anchor i: -1/|P(i)| sum over positives p of log(exp(z_i.z_p / t) / sum over a != i of
    exp(z_i.z_a / t)), where the positives are every other row of the same class. Anchors without a
    positive in the batch are left out; a batch with none gives 0.
    """
    z = F.normalize(embeddings.float(), dim=-1)
    logits = z @ z.T / temperature
    n = len(z)
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~self_mask
    counts = positives.sum(1)
    anchors = counts > 0
    if not bool(anchors.any()):
        return embeddings.sum() * 0.0
    per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(1)[anchors] / counts[anchors]
    return per_anchor.mean()


class _SupCon(nn.Module):
    def __init__(self, temperature: float, weight: float, label_smoothing: float) -> None:
        super().__init__()
        self.temperature, self.weight = temperature, weight
        self.cross_entropy = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(self, outputs: Any, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        targets = batch[1]
        contrastive = supcon_loss(output_of(outputs, "embedding", "loss 'supcon'"), targets, self.temperature)
        return self.cross_entropy(logits_of(outputs), targets) + self.weight * contrastive


class SupCon(Loss):
    """Supervised contrastive loss on the embedding (same class = positive) plus weighted cross-entropy."""

    name = "supcon"
    needs = frozenset({"logits", "embedding"})

    class Params(_Params):
        temperature: float = Field(0.1, gt=0)
        weight: float = Field(1.0, ge=0, description="loss = cross_entropy + weight * supcon")
        label_smoothing: float = Field(0.0, ge=0, lt=1)

    def build(self, spec: ModelSpec) -> nn.Module:
        p = self.params
        return _SupCon(p.temperature, p.weight, p.label_smoothing)


# ---------------------------------------------------------------- CTC


class _CTC(nn.Module):
    def __init__(self, sequences: list[list[int]]) -> None:
        super().__init__()
        self.sequences = sequences

    def forward(self, outputs: Any, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        steps = output_of(outputs, "steps", "loss 'ctc'")
        chosen = [self.sequences[t] for t in batch[1].tolist()]
        targets = torch.tensor([token for s in chosen for token in s], dtype=torch.long, device=steps.device)
        lengths = torch.tensor([len(s) for s in chosen], dtype=torch.long)
        rows, n_steps, symbols = steps.shape
        input_lengths = torch.full((rows,), n_steps, dtype=torch.long)
        nll = F.ctc_loss(steps.float().transpose(0, 1), targets, input_lengths, lengths,
                         blank=symbols - 1, reduction="none", zero_infinity=True)
        return nll.mean()


class CTC(Loss):
    """Connectionist temporal classification: -log of the summed probability of every path to the target.

    The classes are token sequences (labels like "walking running"); the model labels each step
    (``head: ctc``) with a blank token that separates repeats, and collapsing a path removes repeats
    and then blanks. The loss is the mean over rows of -log p(target sequence | x).
    """

    name = "ctc"
    needs = frozenset({"steps"})

    def build(self, spec: ModelSpec) -> nn.Module:
        if not spec.classes:
            raise BadInput("loss 'ctc' needs the class labels (token sequences) in the model spec")
        _, sequences = spec.token_sequences()
        return _CTC(sequences)


# ---------------------------------------------------------------- reconstruction


class _Reconstruction(nn.Module):
    def __init__(self, classification_weight: float) -> None:
        super().__init__()
        self.classification_weight = classification_weight

    def forward(self, outputs: Any, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        objective = output_of(outputs, "objective", "loss 'reconstruction'")
        if not self.classification_weight:
            return objective
        return objective + self.classification_weight * F.cross_entropy(logits_of(outputs), batch[1])


class Reconstruction(Loss):
    """A representation model's own objective (reconstruction; negative ELBO for vae) plus weighted cross-entropy."""

    name = "reconstruction"
    needs = frozenset({"objective"})

    class Params(_Params):
        classification_weight: float = Field(1.0, ge=0, description="0: unsupervised only")

    def build(self, spec: ModelSpec) -> nn.Module:
        return _Reconstruction(self.params.classification_weight)


# ---------------------------------------------------------------- regression


class _Regression(nn.Module):
    """A regression loss on the model's single output column against real-valued targets."""

    def __init__(self, kind: str, delta: float = 1.0) -> None:
        super().__init__()
        self.kind, self.delta = kind, delta  # plain values: the module pickles to spawned workers

    def forward(self, outputs: Any, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        predicted = logits_of(outputs).float().reshape(len(batch[1]), -1)[:, 0]
        target = batch[1].float()
        if self.kind == "huber":
            return F.huber_loss(predicted, target, delta=self.delta)
        return F.l1_loss(predicted, target) if self.kind == "l1" else F.mse_loss(predicted, target)


class Mse(Loss):
    """Mean squared error of the predictions (regression); torch's mse_loss."""

    name = "mse"
    tasks = frozenset({"regression"})

    def build(self, spec: ModelSpec) -> nn.Module:
        return _Regression("mse")


class L1(Loss):
    """Mean absolute error of the predictions (regression), robust to outlying targets; torch's l1_loss."""

    name = "l1"
    tasks = frozenset({"regression"})

    def build(self, spec: ModelSpec) -> nn.Module:
        return _Regression("l1")


class Huber(Loss):
    """Huber loss (regression): squared below ``delta``, absolute above (Huber 1964); torch's huber_loss."""

    name = "huber"
    tasks = frozenset({"regression"})

    class Params(_Params):
        delta: float = Field(1.0, gt=0, description="where squared turns absolute, in standard deviations of the "
                                                    "train targets (the model learns standardised targets)")

    def build(self, spec: ModelSpec) -> nn.Module:
        return _Regression("huber", self.params.delta)


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [CrossEntropy, SupCon, CTC, Reconstruction, Mse, L1, Huber]
