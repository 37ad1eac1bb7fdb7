"""Activation checkpointing: keep a block's inputs, recompute its insides during backward.

Non-reentrant ``torch.utils.checkpoint`` (``use_reentrant=False``): it preserves the RNG state, so
dropout draws the same masks when recomputed and the gradients equal those without checkpointing.
The block's ``forward`` is wrapped on the instance, so parameter names (state_dict keys) do not change.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint, checkpoint_sequential

#: Layer types that are always a block of their own, wherever they sit.
BLOCK_TYPES: tuple[type[nn.Module], ...] = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


#: Byte counters of :func:`saved_bytes` in progress; checkpointed blocks add the inputs they keep.
_COUNTERS: list[list[int]] = []


def _keep(args: Iterable[Any]) -> None:
    for counter in _COUNTERS:
        counter[0] += sum(a.numel() * a.element_size() for a in args if isinstance(a, torch.Tensor))


def _checkpointed(forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if not torch.is_grad_enabled():  # evaluation: nothing is saved for backward anyway
        return forward(*args, **kwargs)
    _keep(args)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def blocks(model: nn.Module) -> list[nn.Module]:
    """The submodules that are checkpointed (and, under ``fsdp``, sharded) one by one.

    In order: ``model.checkpoint_blocks()`` when the model defines it; else every transformer layer
    and every child of an ``nn.ModuleList`` (the usual "stack of layers"); else the root's children
    that hold parameters. A ``nn.Sequential`` root with no such stack is handled by :func:`enable`.
    """
    explicit = getattr(model, "checkpoint_blocks", None)
    if callable(explicit):
        return list(explicit())
    found: list[nn.Module] = []
    seen: set[int] = set()

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if id(child) in seen:
                continue
            if isinstance(child, BLOCK_TYPES) or (isinstance(module, nn.ModuleList) and _has_params(child)):
                found.append(child)
                seen.add(id(child))
                continue
            visit(child)

    visit(model)
    if found:
        return found
    return [child for child in model.children() if _has_params(child)]


def _segments(model: nn.Sequential) -> int:
    return max(1, sum(1 for child in model if _has_params(child)))


def enable(model: nn.Module) -> list[nn.Module]:
    """Checkpoint ``model``'s blocks in place; returns what was wrapped.

    A plain ``nn.Sequential`` (an MLP) is checkpointed in segments, one per layer with parameters,
    so a Linear and the activation and dropout after it are recomputed together.
    """
    if isinstance(model, nn.Sequential) and not callable(getattr(model, "checkpoint_blocks", None)):
        stacked = [m for m in model.modules() if isinstance(m, (*BLOCK_TYPES, nn.ModuleList))]
        if not stacked:
            segments = _segments(model)
            original = model.forward

            def forward(x: torch.Tensor) -> torch.Tensor:
                if not torch.is_grad_enabled():
                    return original(x)
                _keep([x])
                return checkpoint_sequential(model, segments, x, use_reentrant=False)

            model.forward = forward  # type: ignore[method-assign]
            return [model]
    wrapped = blocks(model)
    for block in wrapped:
        block.forward = functools.partial(_checkpointed, block.forward)  # type: ignore[method-assign]
    return wrapped


def saved_bytes(forward: Callable[[], Any], params: Iterable[torch.Tensor] = ()) -> int:
    """Activation bytes kept for backward while ``forward()`` runs: what autograd saves (counted with
    ``saved_tensors_hooks``, each storage once, parameters left out) plus the block inputs that
    checkpointing keeps instead."""
    skip = {p.untyped_storage().data_ptr() for p in params}
    seen: set[int] = set()
    counter = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        ptr = tensor.untyped_storage().data_ptr()
        if ptr not in skip and ptr not in seen:
            seen.add(ptr)
            counter[0] += tensor.untyped_storage().nbytes()
        return tensor

    _COUNTERS.append(counter)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            forward()
    finally:
        _COUNTERS.remove(counter)
    return counter[0]
