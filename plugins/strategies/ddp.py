"""``ddp``: DistributedDataParallel, one replica per worker under torch's elastic launcher.

The strategy plugin owns its mechanics: ``DDPStrategy`` (wrap the model in
``torch.nn.parallel.DistributedDataParallel``, skip the gradient all-reduce on accumulating
micro-batches) is what each worker trains with in core's loop; ``Launched`` is the base of the
built-in launched strategies (``zero`` and ``fsdp`` too).
"""

from __future__ import annotations

import contextlib
from typing import Any

from scribbles.core.training import LaunchedStrategy, TorchStrategy
from torch import nn


class Launched(LaunchedStrategy):
    """Base of the built-in strategies whose workers the elastic launcher starts (``LaunchedStrategy``'s
    checks: classic models, device, precision, world size)."""


class DDPStrategy(TorchStrategy):
    """DistributedDataParallel: replicas, gradients all-reduced bucket by bucket as backward makes them."""

    def _wrap(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, process_group=self.group)

    @property
    def eval_module(self) -> nn.Module:
        return self.model  # the bare replica: evaluation needs no collective

    def sync(self, enabled: bool) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext() if enabled else self.module.no_sync()  # type: ignore[operator]


class DDP(Launched):
    """DistributedDataParallel: one replica per worker, gradients all-reduced (gloo on CPU, nccl on GPU)."""

    name = "ddp"
    torch_strategy = DDPStrategy
