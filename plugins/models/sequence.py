"""Sequence models, the notes' options for sequential data: ``cnn1d``, ``gru_attention``, ``transformer_encoder``.

Each encodes (batch, steps, channels) into per-step states, then a head either classifies a pooled
vector (``head: classify``) or labels every step for CTC (``head: ctc``; see ``StepLabeller``).
Outputs are a mapping (see ``scribbles.core.evaluation``): ``logits`` and ``embedding``, plus ``steps``
with the CTC head.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scribbles.core import BadInput, Model, ModelSpec, Technique, Width, hookimpl
from torch import nn

Head = Literal["classify", "ctc"]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dropout: float = Field(0.1, ge=0, lt=1)
    head: Head = Field("classify", description="classify: one class per row; ctc: a label per step")
    ctc_pool: int = Field(4, ge=1, description="head ctc: steps averaged into one output step")


# ---------------------------------------------------------------- heads


def sequence_log_likelihood(steps: torch.Tensor, sequences: list[list[int]]) -> torch.Tensor:
    """log p(sequence | x) under CTC for every row and every candidate sequence: (rows, sequences).

    ``steps`` holds per-step log-probabilities (rows, steps, tokens + 1), the blank last. All pairs go
    through one batched ``ctc_loss`` call.
    """
    rows, n_steps, symbols = steps.shape
    count = len(sequences)
    log_probs = steps.transpose(0, 1).unsqueeze(2).expand(n_steps, rows, count, symbols)
    log_probs = log_probs.reshape(n_steps, rows * count, symbols)
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    flat = torch.tensor([t for s in sequences for t in s], dtype=torch.long)
    targets = flat.repeat(rows)
    input_lengths = torch.full((rows * count,), n_steps, dtype=torch.long)
    nll = F.ctc_loss(log_probs.float(), targets.to(steps.device), input_lengths, lengths.repeat(rows),
                     blank=symbols - 1, reduction="none")
    # A sequence too long for the steps has probability 0: a large negative score, never -inf or NaN.
    return torch.nan_to_num(-nll, nan=-1e4, neginf=-1e4).reshape(rows, count)


class StepLabeller(nn.Module):
    """The CTC head: per-step log-probabilities over tokens + blank, and class scores from them.

    The classes are token sequences (``ModelSpec.classes`` written as space-separated tokens); the
    score of a class is log p(its sequence | x), summed over every CTC path that collapses to it, so
    the evaluator's softmax is p(sequence | x) renormalised over the candidate sequences.
    """

    def __init__(self, width: int, spec: ModelSpec, pool: int) -> None:
        super().__init__()
        self.pool = pool
        if not spec.classes:
            raise BadInput("model.head: ctc needs the class labels (token sequences) in the model spec")
        vocabulary, self.sequences = spec.token_sequences()
        if any(not s for s in self.sequences):
            raise BadInput("model.head: ctc needs every class label to hold at least one token")
        self.project = nn.Linear(width, len(vocabulary) + 1)

    def forward(self, states: torch.Tensor, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.pool > 1:  # fewer, coarser output steps: far fewer blank paths to rule out
            states = F.avg_pool1d(states.transpose(1, 2), self.pool, ceil_mode=True).transpose(1, 2)
        steps = self.project(states).float().log_softmax(-1)
        logits = sequence_log_likelihood(steps, self.sequences)
        return {"logits": logits, "embedding": embedding, "steps": steps}


class Classifier(nn.Module):
    """The classification head: dropout and a linear layer on the pooled embedding."""

    def __init__(self, width: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, n_classes))

    def forward(self, states: torch.Tensor, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.head(embedding), "embedding": embedding}


def make_head(p: _Params, width: int, spec: ModelSpec) -> nn.Module:
    """The head a sequence model ends with."""
    return StepLabeller(width, spec, p.ctc_pool) if p.head == "ctc" else Classifier(width, spec.n_classes, p.dropout)


class _SequenceModel(Model):
    kinds = frozenset({"sequence"})

    @property
    def outputs(self) -> frozenset[str]:  # type: ignore[override]
        base = {"logits", "embedding"}
        return frozenset(base | {"steps"} if self.params.head == "ctc" else base)


# ---------------------------------------------------------------- cnn1d


class Conv1dNet(nn.Module):
    """Same-padded 1-D convolutions over time, then global average pooling."""

    def __init__(self, channels: int, widths: list[int], kernel: int, dropout: float, head: nn.Module) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in widths:
            layers += [nn.Conv1d(channels, width, kernel, padding=kernel // 2), nn.BatchNorm1d(width), nn.ReLU(),
                       nn.Dropout(dropout)]
            channels = width
        self.convs = nn.Sequential(*layers)
        self.head = head

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        states = self.convs(x.transpose(1, 2)).transpose(1, 2)
        return self.head(states, states.mean(1))


class Cnn1d(_SequenceModel):
    """1-D convolutions over time: parallel and short-range; the fast sequence baseline."""

    name = "cnn1d"

    class Params(_Params):
        channels: list[Width] = Field(default_factory=lambda: [32, 64], min_length=1)
        kernel: int = Field(5, ge=1, description="odd, so that padding keeps the length")

        @model_validator(mode="after")
        def _odd(self) -> Cnn1d.Params:
            if self.kernel % 2 == 0:
                raise ValueError("kernel must be odd so that the sequence keeps its length")
            return self

    def build(self, spec: ModelSpec) -> nn.Module:
        _, channels = spec.input_shape
        p = self.params
        return Conv1dNet(channels, p.channels, p.kernel, p.dropout, make_head(p, p.channels[-1], spec))


# ---------------------------------------------------------------- gru_attention


class AdditiveAttention(nn.Module):
    """Scores each encoder state with v . tanh(W h_t); the context is the softmax-weighted sum."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.project = nn.Linear(width, width)
        self.score = nn.Linear(width, 1, bias=False)

    def forward(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.score(torch.tanh(self.project(states))).squeeze(-1).softmax(-1)
        return (weights.unsqueeze(-1) * states).sum(1), weights


class GRUAttentionNet(nn.Module):
    """A (bidirectional) GRU encoder whose states are combined by attention into a context vector."""

    def __init__(self, channels: int, hidden: int, layers: int, bidirectional: bool, dropout: float,
                 head: nn.Module) -> None:
        super().__init__()
        self.gru = nn.GRU(channels, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                          dropout=dropout if layers > 1 else 0.0)
        self.attention = AdditiveAttention(hidden * (2 if bidirectional else 1))
        self.head = head

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        states, _ = self.gru(x)
        context, _ = self.attention(states)
        return self.head(states, context)


class GRUAttention(_SequenceModel):
    """A GRU encoder with attention: a context vector from a weighted sum of all hidden states."""

    name = "gru_attention"

    class Params(_Params):
        hidden: int = Field(48, ge=1)
        layers: int = Field(1, ge=1)
        bidirectional: bool = True

    def build(self, spec: ModelSpec) -> nn.Module:
        _, channels = spec.input_shape
        p = self.params
        width = p.hidden * (2 if p.bidirectional else 1)
        return GRUAttentionNet(channels, p.hidden, p.layers, p.bidirectional, p.dropout,
                               make_head(p, width, spec))


# ---------------------------------------------------------------- transformer_encoder


def sinusoidal_encoding(steps: int, d_model: int) -> torch.Tensor:
    """The "rotation" positional encoding, (steps, d_model): pairs (sin, cos) of pos * w_i.

    w_i = 10000^(-2i/d). Each row has norm sqrt(d/2), and a shift by k steps rotates every pair by
    the angle k * w_i: ``encoding[p + k] == shift_rotation(k, d) @ encoding[p]``.
    """
    position = torch.arange(steps, dtype=torch.float64).unsqueeze(1)
    angle = position * frequencies(d_model)
    encoding = torch.zeros(steps, d_model, dtype=torch.float64)
    encoding[:, 0::2] = torch.sin(angle)
    encoding[:, 1::2] = torch.cos(angle)
    return encoding.float()


def frequencies(d_model: int) -> torch.Tensor:
    """The angular frequency of each (sin, cos) pair."""
    return torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))


def shift_rotation(shift: int, d_model: int) -> torch.Tensor:
    """The block-diagonal rotation that moves a sinusoidal encoding ``shift`` steps forward."""
    rotation = torch.zeros(d_model, d_model, dtype=torch.float64)
    for i, w in enumerate(frequencies(d_model).tolist()):
        c, s = math.cos(shift * w), math.sin(shift * w)
        rotation[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, s], [-s, c]], dtype=torch.float64)
    return rotation


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention with q, k, v projections.

    ``narrow``: d_model is split across the heads (head width d_model / heads), as in
    ``torch.nn.MultiheadAttention``. ``wide``: every head sees the whole embedding (head width d_model),
    and the output projection maps heads * d_model back to d_model.
    """

    def __init__(self, d_model: int, heads: int, mode: Literal["narrow", "wide"] = "narrow",
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.head_width = d_model // heads if mode == "narrow" else d_model
        inner = heads * self.head_width
        self.q, self.k, self.v = nn.Linear(d_model, inner), nn.Linear(d_model, inner), nn.Linear(d_model, inner)
        self.out = nn.Linear(inner, d_model)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        rows, steps, _ = x.shape
        return x.reshape(rows, steps, self.heads, self.head_width).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        weights = (q @ k.transpose(-2, -1) / math.sqrt(self.head_width)).softmax(-1)
        context = self.dropout(weights) @ v
        rows, _, steps, _ = context.shape
        return self.out(context.transpose(1, 2).reshape(rows, steps, self.heads * self.head_width))


class SequenceNorm(nn.Module):
    """Normalisation of (batch, steps, features).

    layer: over the features of one step of one sample; batch: each feature over the batch and steps;
    instance: each feature over the steps of one sample.
    """

    def __init__(self, kind: Literal["layer", "batch", "instance"], width: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "layer":
            self.norm: nn.Module = nn.LayerNorm(width)
        elif kind == "batch":
            self.norm = nn.BatchNorm1d(width)
        else:
            self.norm = nn.InstanceNorm1d(width, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "layer":
            return self.norm(x)
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class EncoderBlock(nn.Module):
    """Attention and a feed-forward layer, each with a residual connection and a norm (pre or post)."""

    def __init__(self, d_model: int, heads: int, attention: Literal["narrow", "wide"], ff: int,
                 norm: Literal["layer", "batch", "instance"], pre_norm: bool, dropout: float) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.attention = SelfAttention(d_model, heads, attention, dropout)
        self.norm1, self.norm2 = SequenceNorm(norm, d_model), SequenceNorm(norm, d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff * d_model), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(ff * d_model, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.dropout(self.attention(self.norm1(x)))
            return x + self.dropout(self.ff(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attention(x)))
        return self.norm2(x + self.dropout(self.ff(x)))


class TransformerNet(nn.Module):
    """Input embedding + positional information, encoder blocks, mean pooling, head."""

    def __init__(self, steps: int, channels: int, p: TransformerEncoder.Params, head: nn.Module) -> None:
        super().__init__()
        self.embed = nn.Linear(channels, p.d_model)
        if p.positional == "sinusoidal":
            self.register_buffer("position", sinusoidal_encoding(steps, p.d_model))
        else:
            self.position = nn.Parameter(torch.randn(steps, p.d_model) * 0.02)
        self.blocks = nn.ModuleList(
            EncoderBlock(p.d_model, p.heads, p.attention, p.ff, p.norm, p.pre_norm, p.dropout)
            for _ in range(p.layers)
        )
        # Pre-norm leaves the residual stream unnormalised; one final norm settles it for the head.
        self.final = SequenceNorm(p.norm, p.d_model) if p.pre_norm else nn.Identity()
        self.head = head

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.embed(x) + self.position[: x.shape[1]]
        for block in self.blocks:
            h = block(h)
        h = self.final(h)
        return self.head(h, h.mean(1))


class TransformerEncoder(_SequenceModel):
    """A transformer encoder: embeddings, positional encoding, multi-head attention, residuals, norms."""

    name = "transformer_encoder"

    class Params(_Params):
        d_model: int = Field(64, ge=2)
        heads: int = Field(4, ge=1)
        layers: int = Field(2, ge=1)
        ff: int = Field(2, ge=1, description="feed-forward width as a multiple of d_model")
        attention: Literal["narrow", "wide"] = Field("narrow", description="narrow: d_model split across heads")
        positional: Literal["sinusoidal", "learned"] = "sinusoidal"
        norm: Literal["layer", "batch", "instance"] = "layer"
        pre_norm: bool = True

        @model_validator(mode="after")
        def _fits(self) -> TransformerEncoder.Params:
            if self.attention == "narrow" and self.d_model % self.heads:
                raise ValueError(f"narrow attention splits d_model across heads: {self.d_model} is not "
                                 f"divisible by {self.heads} heads (change heads or use attention: wide)")
            if self.positional == "sinusoidal" and self.d_model % 2:
                raise ValueError("sinusoidal positions pair sin and cos: d_model must be even")
            return self

    def build(self, spec: ModelSpec) -> nn.Module:
        steps, channels = spec.input_shape
        p = self.params
        return TransformerNet(steps, channels, p, make_head(p, p.d_model, spec))


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [Cnn1d, GRUAttention, TransformerEncoder]
