"""``fsdp``: fully sharded data parallel (ZeRO-3, ``torch.distributed.fsdp.fully_shard``).

Each block that activation checkpointing would wrap (``activation_checkpointing.blocks``) becomes
one FSDP unit: its parameters, gradients and optimizer state are split across ranks and all-gathered
only around that block's compute.
"""

from __future__ import annotations

import contextlib
from typing import Any

from scribbles.core.training import TorchStrategy, activation_checkpointing, state_options
from torch import nn

from .ddp import Launched


class FSDPStrategy(TorchStrategy):
    """Fully sharded data parallel (ZeRO-3, ``fully_shard``): each block's parameters, gradients and
    optimizer state are split across ranks and all-gathered only around that block's compute."""

    def _wrap(self, model: nn.Module) -> nn.Module:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(self.device.type, (self.world,))
        for block in activation_checkpointing.blocks(model):
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
        return state_options(cpu_offload=self.writer == 0)


class FSDP(Launched):
    """Fully sharded data parallel (ZeRO-3, fully_shard): weights, gradients and optimizer state sharded."""

    name = "fsdp"
    torch_strategy = FSDPStrategy
