"""``ddp``, ``zero`` and ``fsdp``: worker processes started by torch's elastic launcher."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from scribbles.core import Model, Strategy, TrainConfig, TrainResult
from scribbles.core.distributed import launch

from .checks import check_torch, check_world
from .single import start_job


class Launched(Strategy):
    """Base of the strategies whose workers the elastic launcher starts (``engine`` names how they train)."""

    engine: ClassVar[str] = ""

    def check(self, config: TrainConfig, model: Model) -> None:
        """Refuse what this strategy cannot honour, before any work."""
        check_torch(self.name, config, model)
        check_world(self.name, config)

    def fit(
        self,
        model_builder: Callable[[], torch.nn.Module],
        loss: torch.nn.Module,
        train_data: Any,
        valid_data: Any,
        train_config: TrainConfig,
        callbacks: Sequence[Callable[[int, Mapping[str, float]], None]] = (),
    ) -> TrainResult:
        model, train, valid, folder = start_job(self.name, model_builder, train_data, valid_data, train_config)
        return launch(self.engine, model, loss, train, valid, train_config, callbacks, folder)


class DDP(Launched):
    """DistributedDataParallel: one replica per worker, gradients all-reduced (gloo on CPU, nccl on GPU)."""

    name = "ddp"
    engine = "ddp"


class Zero(Launched):
    """ZeRO-1 under DDP: the optimizer state is sharded evenly across the workers."""

    name = "zero"
    engine = "zero"


class FSDP(Launched):
    """Fully sharded data parallel (ZeRO-3, fully_shard): weights, gradients and optimizer state sharded."""

    name = "fsdp"
    engine = "fsdp"
