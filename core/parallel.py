"""Engines: how one process takes part in training, for each torch strategy.

``Engine`` is one process (``single``); ``DDPEngine`` replicates the model and all-reduces gradients
(``ddp``); ``ZeroEngine`` adds an optimizer whose state is sharded evenly across ranks (``zero``,
ZeRO-1); ``FSDPEngine`` shards parameters, gradients and optimizer state with ``fully_shard``
(``fsdp``, ZeRO-3). The training loop (core/loop.py) is the same for all of them.

Every engine saves and loads the same checkpoint layout (see core/checkpoint.py), so a checkpoint
never depends on the strategy or the world size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from . import recompute
from .config import TrainConfig
from .training import make_optimizer


def _state_options(**kwargs: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


class Engine:
    """One process on the CPU or one GPU: the reference the distributed engines must match."""

    strategy = "single"

    def __init__(self, device: torch.device, rank: int = 0, world: int = 1, writer: int = 0,
                 group: Any = None) -> None:
        self.device, self.rank, self.world, self.writer, self.group = device, rank, world, writer, group
        self.model: nn.Module
        self.module: nn.Module
        self.optimizer: Any
        self.scaler: Any

    @property
    def is_writer(self) -> bool:
        """Whether this rank writes checkpoints, metrics and the final weights."""
        return self.rank == self.writer

    def setup(self, model: nn.Module, config: TrainConfig) -> None:
        """Move, checkpoint, wrap ``model``; build the optimizer and the loss scaler."""
        self.model = model.to(self.device)
        if config.activation_checkpointing:
            recompute.enable(self.model, config.activation_checkpointing, config.activation_checkpointing_share)
        self.module = self._wrap(self.model)
        self.optimizer = self._optimizer(config)
        self.scaler = self._scaler(config.precision == "fp16")

    def _wrap(self, model: nn.Module) -> nn.Module:
        return model

    def _optimizer(self, config: TrainConfig) -> Any:
        return make_optimizer(self.model, config)

    def _scaler(self, enabled: bool) -> Any:
        # GradScaler multiplies the loss so fp16 gradients do not underflow; it skips inf/NaN steps
        # and halves the scale when it finds one.
        return torch.amp.GradScaler(self.device.type, enabled=enabled)

    @property
    def eval_module(self) -> nn.Module:
        """The module for evaluation forwards (no gradient synchronisation involved)."""
        return self.module

    def sync(self, enabled: bool) -> contextlib.AbstractContextManager[Any]:
        """Whether the backward pass inside synchronises gradients (off on accumulating micro-batches)."""
        return contextlib.nullcontext()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        """One optimizer step, through the loss scaler under fp16."""
        if not self.scaler.is_enabled():
            self.optimizer.step()
            return
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """``values`` summed over every rank."""
        if self.world == 1:
            return list(values)
        device = self.device if self.device.type == "cuda" else torch.device("cpu")
        tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
        dist.all_reduce(tensor, group=self.group)
        return tensor.tolist()

    def state_dict(self) -> dict[str, Any] | None:
        """Model and optimizer state in the checkpoint layout on the writer, ``None`` elsewhere (collective)."""
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optim_state = get_state_dict(self.model, self.optimizer, options=self._save_options())
        if not self.is_writer:
            return None
        return {"model": model_state, "optimizer": optim_state, "scaler": self.scaler.state_dict()}

    def _save_options(self) -> Any:
        return _state_options()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load a checkpoint written by any engine at any world size (every rank calls it)."""
        from torch.distributed.checkpoint.state_dict import set_state_dict

        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"], options=_state_options())
        self.scaler.load_state_dict(state.get("scaler") or {})

    def model_state(self) -> dict[str, torch.Tensor] | None:
        """The full trained weights on the writer (collective), on the CPU."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        state = get_model_state_dict(self.model, options=self._save_options())
        return {k: v.detach().cpu() for k, v in state.items()} if self.is_writer else None

    def optimizer_bytes(self) -> int:
        """Bytes of optimizer state this rank holds."""
        total = 0
        for state in self.optimizer.state.values():
            for value in state.values():
                if isinstance(value, torch.Tensor):
                    local = value.to_local() if hasattr(value, "to_local") else value
                    total += local.numel() * local.element_size()
        return total


class DDPEngine(Engine):
    """DistributedDataParallel: replicas, gradients all-reduced bucket by bucket as backward makes them."""

    strategy = "ddp"

    def _wrap(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, process_group=self.group)

    @property
    def eval_module(self) -> nn.Module:
        return self.model  # the bare replica: evaluation needs no collective

    def sync(self, enabled: bool) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext() if enabled else self.module.no_sync()  # type: ignore[operator]


class ZeroEngine(DDPEngine):
    """ZeRO-1 under DDP: each rank keeps the optimizer state of an even slice of the parameters."""

    strategy = "zero"

    def _optimizer(self, config: TrainConfig) -> Any:
        from .zero import FlatShardOptimizer

        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        return FlatShardOptimizer(named, lambda params: make_optimizer(params, config), self.rank, self.world,
                                  self.group)

    def _scaler(self, enabled: bool) -> Any:
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        # Each rank sees only its slice of the gradients: the inf/NaN verdict is all-reduced.
        return ShardedGradScaler(self.device.type, enabled=enabled, process_group=self.group)

    def step(self) -> None:
        self.optimizer.load_slice_grad()
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer.inner)
            self.scaler.update()
        else:
            self.optimizer.inner.step()
        self.optimizer.gather()

    def state_dict(self) -> dict[str, Any] | None:
        optim_state = self.optimizer.full_state_dict()
        if not self.is_writer:
            return None
        model_state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        return {"model": model_state, "optimizer": optim_state, "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_full_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state.get("scaler") or {})

    def model_state(self) -> dict[str, torch.Tensor] | None:
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()} if self.is_writer else None

    def optimizer_bytes(self) -> int:
        return self.optimizer.state_bytes()


class FSDPEngine(Engine):
    """Fully sharded data parallel (ZeRO-3, ``fully_shard``): each block's parameters, gradients and
    optimizer state are split across ranks and all-gathered only around that block's compute."""

    strategy = "fsdp"

    def _wrap(self, model: nn.Module) -> nn.Module:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(self.device.type, (self.world,))
        for block in recompute.blocks(model):
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model

    def _scaler(self, enabled: bool) -> Any:
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        return ShardedGradScaler(self.device.type, enabled=enabled, process_group=self.group)

    def sync(self, enabled: bool) -> contextlib.AbstractContextManager[Any]:
        self.module.set_requires_gradient_sync(enabled)  # type: ignore[operator]
        return contextlib.nullcontext()

    def _save_options(self) -> Any:
        # Offloading gathers the full state on rank 0 only; another writer needs it gathered everywhere.
        return _state_options(cpu_offload=self.writer == 0)


ENGINES: dict[str, type[Engine]] = {e.strategy: e for e in (Engine, DDPEngine, ZeroEngine, FSDPEngine)}
