"""``single``: one process on the CPU or one GPU, the reference the distributed strategies match."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from scribbles.core import ConfigError, Model, Strategy, TrainConfig, TrainResult
from scribbles.core.training import check_torch, start_job, train_single


class Single(Strategy):
    """One process on the CPU or one GPU; the reference every other strategy must match."""

    name = "single"

    def check(self, config: TrainConfig, model: Model) -> None:
        """Refuse options this strategy cannot honour, before any work."""
        if config.workers != 1 or config.nodes != 1:
            raise ConfigError("strategy 'single' runs one process; use strategy ddp for workers > 1",
                              "train.workers")
        check_torch(self.name, config, model)

    def prepare(self) -> None:
        """Import what training imports on first use: torch's compiler stack, which its optimizers load when
        the first one is made (``torch._dynamo``, about a second), and the state-dict helpers of checkpoints."""
        import torch._dynamo  # noqa: F401
        from torch.distributed.checkpoint.state_dict import get_state_dict  # noqa: F401

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
        result = train_single(model, loss, train, valid, train_config, callbacks, folder / "checkpoint.pt")
        shutil.rmtree(folder, ignore_errors=True)
        return result
