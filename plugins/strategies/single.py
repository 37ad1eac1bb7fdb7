"""``single``: one process on the CPU or one GPU, the reference the distributed strategies match."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from scribbles.core import ConfigError, Model, Strategy, TrainConfig, TrainResult
from scribbles.core.checkpoint import run_key
from scribbles.core.training import seed_everything, train_single

from .checks import check_torch


def job_dir(config: TrainConfig, strategy: str, model: torch.nn.Module, train: Sequence[torch.Tensor]) -> Path:
    """Where this training job keeps its checkpoint: the same job (config, initial weights, data) finds
    the same folder, so a retried task resumes."""
    key = run_key(config, strategy, model.state_dict(), *train)
    return Path(config.checkpoint_dir).resolve() / key


def start_job(strategy: str, model_builder: Callable[[], torch.nn.Module], train_data: Any, valid_data: Any,
              config: TrainConfig) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...], Path]:
    """What every torch strategy does first: seed, build the model, take the tensors, find the job's folder."""
    seed_everything(config.seed)
    model = model_builder()
    train, valid = tuple(train_data.tensors), tuple(valid_data.tensors)
    return model, train, valid, job_dir(config, strategy, model, train)


class Single(Strategy):
    """One process on the CPU or one GPU; the reference every other strategy must match."""

    name = "single"

    def check(self, config: TrainConfig, model: Model) -> None:
        """Refuse options this strategy cannot honour, before any work."""
        if config.workers != 1 or config.nodes != 1:
            raise ConfigError("strategy 'single' runs one process; use strategy ddp for workers > 1",
                              "train.workers")
        check_torch(self.name, config, model)

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
