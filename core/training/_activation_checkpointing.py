"""Activation checkpointing: keep a block's inputs, recompute its insides during backward.

Non-reentrant ``torch.utils.checkpoint`` (``use_reentrant=False``): it preserves the RNG state, so
dropout draws the same masks when recomputed and the gradients equal those without checkpointing.
The block's ``forward`` is wrapped on the instance, so parameter names (state_dict keys) do not change.

Which blocks: the first ``share`` of them (by default :data:`DEFAULT_SHARE` of the policy). The last
block is never checkpointed: backward needs its activations first, so they are all alive at the
start of backward whether kept or recomputed, and recomputing them costs time and lowers no peak.

What is recomputed inside a checkpointed block, the policy:

* ``full`` (the default) recomputes every op: a block keeps only its input (about 1/12 of a
  transformer layer's activations) for one more forward pass of it.
* ``selective`` also keeps the outputs of the ops that cost the most to recompute per byte kept:
  attention kernels and contracting matmuls (inner dimension wider than the output, e.g. the second
  linear of a transformer MLP), and recomputes the rest. A transformer layer then keeps about a
  quarter of its activations and skips about a quarter of the recompute, but finding those ops takes
  a Python ``TorchDispatchMode`` that sees every op of the block, forward and recompute: on a CPU
  with small layers that overhead eats most of the saving (``bench/strategies.py`` P5), so it is an
  option, for GPUs (where the host overhead overlaps the kernels) and for big layers.

The dispatch modes are our own, not torch's ``create_selective_checkpoint_contexts``: that one calls
a Python policy with a context object for every op (views included), which cost more still.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_unflatten
from torch.utils.checkpoint import checkpoint, checkpoint_sequential

Policy = Literal["selective", "full"]

#: Share of the blocks checkpointed when none is given. ``full``: three quarters keep about a third of
#: a transformer stack's activations for three quarters of a forward pass of recompute (each block
#: checkpointed costs the same time and saves the same bytes, so the share is the trade). ``selective``
#: keeps more per block, so it checkpoints every block but the last.
DEFAULT_SHARE: dict[str, float] = {"full": 0.75, "selective": 1.0}

#: Layer types that are always a block of their own, wherever they sit.
BLOCK_TYPES: tuple[type[nn.Module], ...] = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)

_aten = torch.ops.aten
#: Fused attention kernels (whichever exist in this torch build); their outputs are kept.
_ATTENTION = frozenset(
    getattr(_aten, name)
    for name in (
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_flash_attention_forward",
        "_efficient_attention_forward",
    )
    if hasattr(_aten, name)
)
#: Matmuls, by the position of their two matrix operands; outputs kept when they contract.
_MATMULS = {_aten.mm: 0, _aten.bmm: 0, _aten.addmm: 1, _aten.baddbmm: 1}
#: The op overloads the policy looks at: every other op passes the dispatch modes with one set lookup
#: (they see every op of a block, views included, so their per-op cost is what selective pays extra).
_CANDIDATES = frozenset(
    getattr(packet, name) for packet in (*_ATTENTION, *_MATMULS) for name in packet.overloads()
)


class _Count:
    """Bytes of one :func:`saved_bytes` measurement, each storage counted once."""

    def __init__(self, skip: set[int]) -> None:
        self.bytes = 0
        self.seen = set(skip)

    def add(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.seen:
            self.seen.add(storage.data_ptr())
            self.bytes += storage.nbytes()


#: Measurements of :func:`saved_bytes` in progress; checkpointed blocks add what they keep.
_COUNTS: list[_Count] = []


def _keep(tensors: Iterable[Any]) -> None:
    # Checkpointing holds these outside autograd's saved tensors (block inputs, kept op outputs), so
    # saved_tensors_hooks would not see them all; the storage dedup keeps anything from counting twice.
    for count in _COUNTS:
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                count.add(tensor)


def _argument(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], name: str, default: Any) -> Any:
    for i, argument in enumerate(func._schema.arguments):
        if argument.name == name:
            return args[i] if i < len(args) else kwargs.get(name, default)
    return default


def worth_keeping(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether the ``selective`` policy keeps this aten op's output instead of recomputing it.

    Attention kernels, unless they draw dropout (replaying a kept output would not advance the RNG,
    so later dropout in the block would draw other masks than in the forward pass). Matmuls whose
    inner dimension is wider than their output: they cost ``2 * inner`` flops per element kept.
    """
    packet = func.overloadpacket
    if packet in _ATTENTION:
        return not _argument(func, args, kwargs, "dropout_p", 0.0)
    first = _MATMULS.get(packet)
    if first is None:
        return False
    a, b = args[first], args[first + 1]
    return a.shape[-1] > b.shape[-1]


def _alias(tensor: torch.Tensor) -> torch.Tensor:
    # A detached alias (no autograd history to drag along, no reference cycle through grad_fn). Below
    # autograd, detach skips ADInplaceOrView by default and the alias would get a version counter of
    # its own; with the key on, it shares the original's, so an in-place change is seen (torch's own
    # selective checkpointing does the same).
    with torch._C._SetExcludeDispatchKeyGuard(torch._C.DispatchKey.ADInplaceOrView, False):
        return tensor.detach()


class _Kept:
    """One kept op output: detached aliases of its tensors and their versions at the time."""

    def __init__(self, out: Any) -> None:
        leaves, self.spec = tree_flatten(out)
        self.leaves = [_alias(leaf) if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves]
        self.versions = [leaf._version if isinstance(leaf, torch.Tensor) else None for leaf in leaves]

    def value(self) -> Any | None:
        """The output again, or None when one of its tensors was modified in place since."""
        for leaf, version in zip(self.leaves, self.versions, strict=True):
            if isinstance(leaf, torch.Tensor) and leaf._version != version:
                return None
        return tree_unflatten(self.leaves, self.spec)


class _Store:
    """Kept outputs of one checkpointed call, by op and by the op's call number in the block: the
    recompute runs the same ops in the same order, so the n-th ``addmm`` there is the n-th here."""

    def __init__(self) -> None:
        self.kept: dict[tuple[Any, int], _Kept] = {}
        self.calls: defaultdict[Any, int] = defaultdict(int)

    def number(self, func: Any) -> int:
        self.calls[func] += 1
        return self.calls[func] - 1


class _KeepOutputs(TorchDispatchMode):
    """Forward pass of a selectively checkpointed block: remember the outputs worth keeping."""

    def __init__(self, store: _Store) -> None:
        super().__init__()
        self.store = store

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        if func not in _CANDIDATES:
            return func(*args, **(kwargs or {}))
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        number = self.store.number(func)
        if worth_keeping(func, args, kwargs):
            kept = _Kept(out)
            self.store.kept[func, number] = kept
            _keep(kept.leaves)
        return out


class _ReplayOutputs(TorchDispatchMode):
    """Recompute of a selectively checkpointed block: hand back the kept outputs, in the same order."""

    def __init__(self, store: _Store) -> None:
        super().__init__()
        self.store = store
        self.calls: defaultdict[Any, int] = defaultdict(int)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        if func not in _CANDIDATES:
            return func(*args, **(kwargs or {}))
        number = self.calls[func]
        self.calls[func] += 1
        kept = self.store.kept.pop((func, number), None)
        out = kept.value() if kept is not None else None
        # Not kept, or modified in place after the forward pass used it: compute it again.
        return func(*args, **(kwargs or {})) if out is None else out


def _selective_contexts() -> tuple[_KeepOutputs, _ReplayOutputs]:
    store = _Store()
    return _KeepOutputs(store), _ReplayOutputs(store)


def _checkpointed(forward: Callable[..., Any], policy: Policy, *args: Any, **kwargs: Any) -> Any:
    if not torch.is_grad_enabled():  # evaluation: nothing is saved for backward anyway
        return forward(*args, **kwargs)
    _keep(args)
    if policy == "selective":
        kwargs["context_fn"] = _selective_contexts
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


@runtime_checkable
class DeclaresBlocks(Protocol):
    """A module that names the submodules to checkpoint (and, under ``fsdp``, shard) itself.

    A model technique's ``build`` may return such a module when the automatic search below would pick
    the wrong blocks; ``checkpoint_blocks()`` returns them in forward order.
    """

    def checkpoint_blocks(self) -> Iterable[nn.Module]: ...


def blocks(model: nn.Module) -> list[nn.Module]:
    """The submodules that are checkpointed (and, under ``fsdp``, sharded) one by one.

    In order: ``model.checkpoint_blocks()`` when the model defines it; else every transformer layer
    and every child of an ``nn.ModuleList`` (the usual "stack of layers"); else the root's children
    that hold parameters. A ``nn.Sequential`` root with no such stack is handled by :func:`enable`.
    """
    if isinstance(model, DeclaresBlocks):
        return list(model.checkpoint_blocks())
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


def enable(model: nn.Module, policy: Policy = "full", share: float | None = None) -> list[nn.Module]:
    """Checkpoint the first ``share`` of ``model``'s blocks in place with ``policy``; returns what was
    wrapped. The last block is left out (see the module docstring); a lone block is checkpointed.

    A plain ``nn.Sequential`` (an MLP) is checkpointed whole, in segments, one per layer with
    parameters, so a Linear and the activation and dropout after it are recomputed together.
    """
    if policy not in DEFAULT_SHARE:
        raise ValueError(f"activation checkpointing policy {policy!r}: expected 'selective' or 'full'")
    share = DEFAULT_SHARE[policy] if share is None else share
    if not 0 < share <= 1:
        raise ValueError(f"activation checkpointing share {share!r}: expected a number in (0, 1]")
    if isinstance(model, nn.Sequential) and not isinstance(model, DeclaresBlocks):
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
    found = blocks(model)
    # Rounded up, and never to no block at all; the epsilon keeps 0.75 * 12 at 9 under float rounding.
    count = max(1, min(len(found) - 1, math.ceil(share * len(found) - 1e-9))) if len(found) > 1 else len(found)
    wrapped = found[:count]
    for block in wrapped:
        block.forward = functools.partial(_checkpointed, block.forward, policy)  # type: ignore[method-assign]
    return wrapped


def saved_bytes(forward: Callable[[], Any], params: Iterable[torch.Tensor] = ()) -> int:
    """Activation bytes kept for backward while ``forward()`` runs: what autograd saves (counted with
    ``saved_tensors_hooks``, parameters left out) plus what checkpointing keeps outside autograd
    (block inputs, outputs kept by the ``selective`` policy), each storage counted once."""
    count = _Count({p.untyped_storage().data_ptr() for p in params})

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        count.add(tensor)
        return tensor

    _COUNTS.append(count)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            forward()
    finally:
        _COUNTS.remove(count)
    return count.bytes
