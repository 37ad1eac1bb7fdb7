"""The evaluation engine: class probabilities with and without test-time augmentation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .contracts import Metric, View
from .outputs import logits_of, output_of

IDENTITY = View("identity", lambda x: x)


def merge_probabilities(probs: torch.Tensor, how: str) -> torch.Tensor:
    """Merge (views, rows, classes) probabilities into (rows, classes).

    Merging probabilities, never logits, keeps every mode finite (no NaN from negative logits).
    """
    if how == "mean":
        return probs.mean(0)
    if how == "gmean":
        merged = probs.clamp_min(1e-12).log().mean(0).exp()
    elif how == "max":
        merged = probs.max(0).values
    else:
        raise ValueError(f"unknown merge {how!r}; use mean, gmean or max")
    return merged / merged.sum(-1, keepdim=True)


@torch.no_grad()
def predict_views(
    model: nn.Module, inputs: torch.Tensor, views: Sequence[View], batch_size: int = 256
) -> torch.Tensor:
    """Probabilities of every view, (views, rows, classes); views of a chunk share one forward pass."""
    model.eval()
    device = next(model.parameters()).device
    out: list[torch.Tensor] = []
    for start in range(0, len(inputs), batch_size):
        x = inputs[start : start + batch_size].to(device)
        stacked = torch.cat([view.apply(x) for view in views])
        logits = logits_of(model(stacked)).float().reshape(len(views), len(x), -1)
        restored = torch.stack([view.invert(logits[i]) for i, view in enumerate(views)])
        out.append(restored.softmax(-1).cpu())
    return torch.cat(out, dim=1)


def evaluate(
    model: nn.Module,
    inputs: torch.Tensor,
    views: Sequence[View] = (),
    merge: str = "mean",
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Plain and TTA probabilities; with no views both are the plain ones.

    The identity view is always one of the TTA views, so TTA never discards the plain prediction.
    """
    all_views = [IDENTITY, *views]
    probs = predict_views(model, inputs, all_views, batch_size)
    plain = probs[0]
    tta = merge_probabilities(probs, merge) if views else plain
    return plain.numpy(), tta.numpy()


@torch.no_grad()
def collect_output(model: nn.Module, inputs: torch.Tensor, key: str, batch_size: int = 256) -> np.ndarray:
    """One named model output (``reconstruction``, ``embedding``...) over every row, flattened per row."""
    model.eval()
    device = next(model.parameters()).device
    parts = []
    for start in range(0, len(inputs), batch_size):
        x = inputs[start : start + batch_size].to(device)
        value = output_of(model(x), key, f"the evaluation of '{key}'")
        parts.append(value.float().reshape(len(x), -1).cpu())
    return torch.cat(parts).numpy()


def score(
    metrics: Sequence[Metric],
    model: nn.Module,
    inputs: torch.Tensor,
    y_true: np.ndarray,
    plain: np.ndarray,
    tta: np.ndarray,
    batch_size: int = 256,
) -> dict[str, float]:
    """``{metric}`` and ``{metric}_tta`` for every metric.

    A metric on a model output other than probabilities (``reconstruction_mse``) scores the plain
    inputs; TTA views have no single reconstruction to compare, so its ``_tta`` value is the plain one.
    """
    scores: dict[str, float] = {}
    for metric in metrics:
        if metric.needs == "proba":
            scores[metric.name] = metric.compute(y_true, plain)
            scores[f"{metric.name}_tta"] = metric.compute(y_true, tta)
        else:
            output = collect_output(model, inputs, metric.needs, batch_size)
            value = metric.compute(inputs.reshape(len(inputs), -1).numpy(), output)
            scores[metric.name] = scores[f"{metric.name}_tta"] = value
    return scores
