"""Training strategies: ``single`` (one process, CPU or one GPU)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from scribbles.core import ConfigError, Model, Strategy, Technique, TrainConfig, TrainResult, hookimpl
from scribbles.core.training import seed_everything, train_single


class Single(Strategy):
    """One process on the CPU or one GPU; the reference every other strategy must match."""

    name = "single"

    def check(self, config: TrainConfig, model: Model) -> None:
        """Refuse options this strategy cannot honour, before any work."""
        if config.workers != 1:
            raise ConfigError("strategy 'single' runs one process; use strategy ddp for workers > 1",
                              "train.workers")
        if config.activation_checkpointing:
            raise ConfigError("strategy 'single' does not support activation checkpointing yet",
                              "train.activation_checkpointing")

    def fit(
        self,
        model_builder: Callable[[], torch.nn.Module],
        loss: torch.nn.Module,
        train_data: Any,
        valid_data: Any,
        train_config: TrainConfig,
        callbacks: Sequence[Callable[[int, Mapping[str, float]], None]] = (),
    ) -> TrainResult:
        seed_everything(train_config.seed)
        model = model_builder()
        return train_single(model, loss, tuple(train_data.tensors), tuple(valid_data.tensors),
                            train_config, callbacks)


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [Single]
