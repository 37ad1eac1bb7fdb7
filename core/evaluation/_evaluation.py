"""The evaluation engine: class probabilities with and without test-time augmentation (TTA).

Every view of a block of rows is predicted in ``eval()`` mode under ``no_grad``, either stacked into one
forward pass (``batched``) or one pass per view (``loop``); ``auto`` times both on the first blocks and
keeps the faster. Dense outputs (per time step or per pixel) are mapped back by each view's ``invert``
before merging. Merging is done on probabilities, never logits, so every mode stays finite.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .. import metric_names as naming
from ..contracts import Metric, TTATransform, View
from ._outputs import logits_of, output_of

IDENTITY = View("identity", lambda x: x, lambda y: y)
MERGES: tuple[str, ...] = ("mean", "median", "gmean", "max", "beta")
MODES: tuple[str, ...] = ("auto", "batched", "loop")
#: Blocks that ``auto`` needs before it probes: below this, probing would cost more than it saves.
PROBE_MIN_BLOCKS = 8
#: At most this many blocks timed in each mode, after one warm-up block (first calls allocate and pick
#: kernels); one per ``PROBE_MIN_BLOCKS`` blocks.
PROBE_BLOCKS = 4

# ``auto``'s choice per (model type, parameter count, block shape, views, device): folds of one run
# share an architecture, so only the first evaluation pays for the probe.
_MODE_CACHE: dict[tuple[object, ...], str] = {}


def clear_mode_cache() -> None:
    """Forget ``auto``'s earlier choices (benchmarks and tests start from a clean slate)."""
    _MODE_CACHE.clear()


def merge_probabilities(probs: torch.Tensor, how: str, beta: float = 0.25, class_dim: int | None = -1) -> torch.Tensor:
    """Merge (views, rows, ...) probabilities into (rows, ...); view 0 is the plain (identity) view.

    ``mean`` averages; ``median`` takes the element-wise median (renormalised over classes, unless
    ``class_dim`` is None: regression predictions); ``gmean`` is the geometric mean and ``max`` the
    element-wise maximum, both renormalised over classes; ``beta`` is fastai's blend
    ``beta * plain + (1 - beta) * mean(augmented)`` (``torch.lerp(augmented, plain, beta)``). Merging
    probabilities, never logits, keeps every mode finite (no NaN from negative logits), and every mode
    but ``beta`` is symmetric in the views.
    """
    if how == "mean":
        return probs.mean(0)
    if how == "median":
        merged = probs.median(0).values
        return merged if class_dim is None else merged / merged.sum(class_dim, keepdim=True)
    if how == "beta":
        if len(probs) == 1:
            return probs[0]
        return torch.lerp(probs[1:].mean(0), probs[0], beta)
    if how == "gmean":
        merged = probs.clamp_min(1e-12).log().mean(0).exp()
    elif how == "max":
        merged = probs.max(0).values
    else:
        raise ValueError(f"unknown merge {how!r}; use one of {', '.join(MERGES)}")
    return merged / merged.sum(class_dim, keepdim=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _probs(logits: torch.Tensor, view: View, dense: bool, class_dim: int | None) -> torch.Tensor:
    """One view's probabilities, its dense outputs mapped back to the original positions first.

    ``class_dim`` None: a regression's predictions, returned as they are (no softmax)."""
    if dense:
        logits = view.invert(logits)
    return logits.float() if class_dim is None else logits.float().softmax(class_dim)


def _batched(model: nn.Module, x: torch.Tensor, views: Sequence[View], class_dim: int | None) -> torch.Tensor:
    """Every view of ``x`` stacked into one forward pass; (views, rows, ...)."""
    logits = logits_of(model(torch.cat([view.apply(x) for view in views])))
    logits = logits.reshape(len(views), len(x), *logits.shape[1:])
    dense = logits.dim() > 3
    return torch.stack([_probs(logits[i], view, dense, class_dim) for i, view in enumerate(views)])


def _loop(model: nn.Module, x: torch.Tensor, views: Sequence[View], class_dim: int | None) -> torch.Tensor:
    """One forward pass per view of ``x``; (views, rows, ...)."""
    out = []
    for view in views:
        logits = logits_of(model(view.apply(x)))
        out.append(_probs(logits, view, logits.dim() > 2, class_dim))
    return torch.stack(out)


_RUNNERS = {"batched": _batched, "loop": _loop}


def _device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _probe_key(model: nn.Module, block: torch.Tensor, n_views: int, device: torch.device) -> tuple[object, ...]:
    n_params = sum(p.numel() for p in model.parameters())
    return (type(model).__qualname__, n_params, tuple(block.shape), block.dtype, n_views, str(device))


@dataclass
class Prediction:
    """Probabilities of every view, (views, rows, ...), and the mode that produced them."""

    probs: torch.Tensor
    mode: str
    timings: dict[str, float] = field(default_factory=dict)


@torch.no_grad()
def predict_views(
    model: nn.Module,
    inputs: torch.Tensor,
    views: Sequence[View],
    chunk: int = 256,
    mode: str = "auto",
    class_dim: int | None = -1,
) -> Prediction:
    """Probabilities of every view of ``inputs``, in blocks of ``chunk`` rows.

    ``batched`` sends ``chunk x len(views)`` samples through one forward pass per block; ``loop``
    sends ``len(views)`` passes of ``chunk`` samples. Both see the same blocks, so a view that draws
    seeded noise per block draws the same noise in either mode. ``auto`` runs the first block in both
    modes (warm-up), times both on the next blocks (one per ``PROBE_MIN_BLOCKS``, at most ``PROBE_BLOCKS``)
    and keeps the faster for the rest;
    with fewer than ``PROBE_MIN_BLOCKS`` blocks (or one view) it uses ``batched`` without probing.
    The model is put in ``eval()`` mode and given back in the mode it came in.
    """
    if mode not in MODES:
        raise ValueError(f"unknown TTA mode {mode!r}; use one of {', '.join(MODES)}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1 row, got {chunk}")
    was_training = model.training
    model.eval()
    try:
        device = _device(model)
        blocks = [inputs[start : start + chunk] for start in range(0, len(inputs), chunk)]
        out: list[torch.Tensor] = []
        timings: dict[str, float] = {}
        chosen = mode
        if mode == "auto":
            key = _probe_key(model, blocks[0], len(views), device) if blocks else ()
            chosen = _MODE_CACHE.get(key, "")
            if not chosen:
                if len(views) < 2 or len(blocks) < PROBE_MIN_BLOCKS:
                    chosen = "batched"
                else:
                    chosen, timings, out = _probe(model, blocks, views, device, class_dim)
                    _MODE_CACHE[key] = chosen
        runner = _RUNNERS[chosen]
        for block in blocks[len(out) :]:
            out.append(runner(model, block.to(device), views, class_dim).cpu())
        if not out:
            empty = logits_of(model(inputs[:0].to(device)))
            return Prediction(torch.empty(len(views), *empty.shape), chosen, timings)
        return Prediction(torch.cat(out, dim=1), chosen, timings)
    finally:
        model.train(was_training)


def _probe(
    model: nn.Module, blocks: list[torch.Tensor], views: Sequence[View], device: torch.device,
    class_dim: int | None,
) -> tuple[str, dict[str, float], list[torch.Tensor]]:
    """Time both modes on the first blocks; return the faster, each mode's best seconds, and the outputs.

    The best (minimum) time per block is compared, not the sum: on a shared machine one preempted block
    would otherwise decide. One timed block per 8 blocks, at most ``PROBE_BLOCKS``, bounds the cost.
    """
    out: list[torch.Tensor] = []
    best = {"batched": float("inf"), "loop": float("inf")}
    timed_blocks = max(1, min(PROBE_BLOCKS, len(blocks) // PROBE_MIN_BLOCKS))
    for index in range(1 + timed_blocks):
        x = blocks[index].to(device)
        # Alternate which mode goes first, so neither always runs on a cache the other warmed.
        order = ("batched", "loop") if index % 2 else ("loop", "batched")
        results = {}
        for name in order:
            _sync(device)
            start = time.perf_counter()
            results[name] = _RUNNERS[name](model, x, views, class_dim)
            _sync(device)
            if index:  # block 0 is the warm-up
                best[name] = min(best[name], time.perf_counter() - start)
        out.append(results["batched"].cpu())
    chosen = min(best, key=best.__getitem__)
    return chosen, best, out


@dataclass
class TTAResult:
    """Plain and TTA probabilities, the TTA probabilities of each transform alone, and the mode used."""

    plain: np.ndarray
    tta: np.ndarray
    by_transform: dict[str, np.ndarray]
    mode: str


def evaluate_groups(
    model: nn.Module,
    inputs: torch.Tensor,
    groups: Sequence[tuple[str, Sequence[View]]] = (),
    merge: str = "mean",
    chunk: int = 256,
    *,
    beta: float = 0.25,
    mode: str = "auto",
    class_dim: int | None = -1,
) -> TTAResult:
    """Plain, TTA and per-transform TTA probabilities from one prediction of every view.

    ``groups`` holds one ``(label, views)`` pair per transform. The TTA prediction merges the identity
    view with every view of every group; ``by_transform[label]`` merges the identity with that group's
    views only (no extra forward passes). With no views, TTA is the plain prediction, bit for bit.
    """
    if merge not in MERGES:
        raise ValueError(f"unknown merge {merge!r}; use one of {', '.join(MERGES)}")
    views = [view for _, group in groups for view in group]
    if not views:
        plain = predict_views(model, inputs, [IDENTITY], chunk, "batched", class_dim).probs[0].numpy()
        return TTAResult(plain, plain, {}, "batched")
    prediction = predict_views(model, inputs, [IDENTITY, *views], chunk, mode, class_dim)
    probs = prediction.probs
    by_transform: dict[str, np.ndarray] = {}
    start = 1
    for label, group in groups:
        index = [0, *range(start, start + len(group))]
        by_transform[label] = merge_probabilities(probs[index], merge, beta, class_dim).numpy()
        start += len(group)
    tta = merge_probabilities(probs, merge, beta, class_dim).numpy()
    return TTAResult(probs[0].numpy(), tta, by_transform, prediction.mode)


def evaluate(
    model: nn.Module,
    inputs: torch.Tensor,
    views: Sequence[View] = (),
    merge: str = "mean",
    chunk: int = 256,
    *,
    beta: float = 0.25,
    mode: str = "auto",
    class_dim: int | None = -1,
) -> tuple[np.ndarray, np.ndarray]:
    """Plain and TTA probabilities; with no views both are the plain ones.

    The identity view is always one of the TTA views, so TTA never discards the plain prediction.
    """
    result = evaluate_groups(
        model, inputs, [("tta", views)] if views else [], merge, chunk, beta=beta, mode=mode, class_dim=class_dim
    )
    return result.plain, result.tta


def transform_labels(names: Sequence[str], reserved: Sequence[str] = ("gain",)) -> list[str]:
    """Metric-safe, unique labels for transforms: ``hflip``, ``shift``, ``shift_2`` for a second shift."""
    labels: list[str] = []
    for name in names:
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "transform"
        label, n = base, 1
        while label in labels or label in reserved:
            n += 1
            label = f"{base}_{n}"
        labels.append(label)
    return labels


def tta_groups(transforms: Sequence[TTATransform]) -> list[tuple[str, list[View]]]:
    """``(label, views)`` per transform, labelled for the breakdown (a compose by its parts' names)."""
    labels = transform_labels([t.label for t in transforms])
    return [(label, t.views()) for label, t in zip(labels, transforms, strict=True)]


def gain(greater_is_better: bool, before: float, after: float) -> float:
    """How much ``after`` improves on ``before``: positive when better, whichever way the metric reads."""
    return after - before if greater_is_better else before - after


def tta_metrics(
    metrics: Sequence[Metric],
    y_true: np.ndarray,
    result: TTAResult,
    model: nn.Module | None = None,
    inputs: torch.Tensor | None = None,
) -> dict[str, float]:
    """The fold's final metrics: ``{m}``, ``{m}_tta``, ``{m}_tta_gain`` and, per transform, ``{m}_tta_{label}``
    (TTA with that transform's views alone, e.g. ``accuracy_tta_hflip``).

    The gain is positive when TTA helps, whichever way the metric reads: TTA minus plain for a metric where
    greater is better (accuracy), plain minus TTA where lower is better (log_loss).

    A metric on a model output other than probabilities (``reconstruction_mse``) scores the plain
    inputs; TTA views have no single reconstruction to compare, so its ``_tta`` value is the plain one.
    """
    out: dict[str, float] = {}
    for metric in metrics:
        if metric.needs != "proba":
            if model is None or inputs is None:
                raise ValueError(f"metric '{metric.name}' needs the model and the inputs")
            output = collect_output(model, inputs, metric.needs)
            value = metric.compute(inputs.reshape(len(inputs), -1).numpy(), output)
            out[metric.name] = out[naming.tta(metric.name)] = value
            out[naming.tta_gain(metric.name)] = 0.0
            continue
        plain = metric.compute(y_true, result.plain)
        tta = plain if result.tta is result.plain else metric.compute(y_true, result.tta)
        out[metric.name] = plain
        out[naming.tta(metric.name)] = tta
        out[naming.tta_gain(metric.name)] = gain(metric.greater_is_better, plain, tta)
        for label, probs in result.by_transform.items():
            out[naming.tta(metric.name, label)] = metric.compute(y_true, probs)
    return out


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


