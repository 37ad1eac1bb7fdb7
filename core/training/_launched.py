"""The base of strategy techniques that train in this process or in workers under the launcher.

A strategy plugin module owns its mechanics: ``class MyStrategy(LaunchedStrategy)`` names a
``TorchStrategy`` subclass in ``torch_strategy``, and the worker that the elastic launcher starts gets
that class from its own registry by the strategy's name (nothing but the name travels in the job's
JSON recipe, so nothing a worker receives can run code). ``scribbles.plugins.strategies`` holds the
built-in ones (``ddp``, ``zero``, ``fsdp``); a third-party one is installed like any other plugin.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..config import TrainConfig
from ..contracts import Model, Strategy, TrainResult
from ..errors import BadInput, ConfigError, ScribblesWarning
from ._checkpoint import run_key
from ._checks import check_torch
from ._job_token import job_token
from ._torch_strategy import TorchStrategy
from ._training import seed_everything


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


def check_world(strategy: str, config: TrainConfig) -> None:
    """The global batch must give every worker a row; several machines need a rendezvous endpoint."""
    world = config.workers * config.nodes
    if world > config.batch_size:
        raise ConfigError(
            f"{world} workers but a global batch of {config.batch_size} rows: every worker needs at least "
            f"one row of each batch; lower train.workers or raise train.batch_size", "train.workers")
    if config.nodes > 1:
        if not config.rdzv_endpoint:
            raise ConfigError(f"strategy '{strategy}' on {config.nodes} machines needs train.rdzv_endpoint: "
                              "HOST:PORT of this machine, which the others join", "train.rdzv_endpoint")
        match = re.fullmatch(r"[^:\s]+:(\d{1,5})", config.rdzv_endpoint)
        if not match or not 1 <= int(match[1]) <= 65535:
            raise ConfigError(f"{config.rdzv_endpoint[:80]!r} is not HOST:PORT with a port of 1 to 65535",
                              "train.rdzv_endpoint")
        try:
            job_token(f"strategy '{strategy}' on {config.nodes} machines")
        except BadInput as exc:
            raise ConfigError(str(exc), "train.nodes") from None


class WorldSizeWarning(ScribblesWarning):
    """A model has layers whose results depend on how the global batch is split across workers."""


def batch_split_layers(model: torch.nn.Module) -> list[str]:
    """The kinds of layer in ``model`` that break "W workers learn what one worker learns", sorted:
    dropout (``nn.Dropout*``, ``nn.AlphaDropout``, and the ``dropout`` of ``nn.RNN``/``GRU``/``LSTM``
    and ``nn.MultiheadAttention``) with p > 0 draws its masks per worker, and batch norm
    (``nn.BatchNorm1d/2d/3d``, ``nn.SyncBatchNorm``, lazy ones too) normalises each worker's rows
    with their own statistics. Layer norm, group norm and instance norm work row by row and are safe.
    """
    found = set()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd) and module.p > 0:
            found.add(type(module).__name__)
        elif isinstance(module, torch.nn.RNNBase | torch.nn.MultiheadAttention) and module.dropout > 0:
            found.add(f"{type(module).__name__}(dropout)")
        elif isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            found.add(type(module).__name__)
    return sorted(found)


_WARNED: set[tuple[str, int, tuple[str, ...]]] = set()


def warn_batch_split(model: torch.nn.Module, strategy: str, config: TrainConfig) -> None:
    """One warning line (once per process) when ``model`` has layers that a split batch changes and
    more than one worker trains it."""
    world = config.workers * config.nodes
    layers = tuple(batch_split_layers(model))
    if world > 1 and layers and (strategy, world, layers) not in _WARNED:
        _WARNED.add((strategy, world, layers))
        norms = [layer for layer in layers if "Norm" in layer]
        what = " and ".join(part for part in (
            "draw dropout masks" if len(norms) < len(layers) else "",
            "take batch-norm statistics" if norms else "") if part)
        warnings.warn(WorldSizeWarning(
            f"strategy '{strategy}' on {world} workers: the model's {', '.join(layers)} layers {what} per worker, "
            f"so its weights differ from one worker's (README: Training strategies)"), stacklevel=2)


class LaunchedStrategy(Strategy):
    """A strategy whose ``train.workers`` x ``train.nodes`` worker processes torch's elastic launcher
    starts; each trains with ``torch_strategy`` (a ``TorchStrategy`` subclass) in core's training loop.

    A subclass sets ``name``, a docstring and ``torch_strategy``, and may extend ``check``.
    """

    #: The class each worker trains with; None (a subclass that forgot it) is refused by ``check``: plain
    #: ``TorchStrategy`` replicas would train apart without a word.
    torch_strategy: ClassVar[type[TorchStrategy] | None] = None

    def check(self, config: TrainConfig, model: Model) -> None:
        """Refuse a classic model, a device or precision this machine lacks (``check_torch``), a missing
        ``torch_strategy``, a world that leaves a worker without rows, or several machines without a
        rendezvous."""
        check_torch(self.name, config, model)
        found = type(self).torch_strategy
        if not (isinstance(found, type) and issubclass(found, TorchStrategy)):
            raise ConfigError(f"strategy '{self.name}' ({type(self).__module__}) sets no torch_strategy: name the "
                              f"TorchStrategy subclass its workers train with", "train.strategy")
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
        """Train under the launcher (torch's elastic launcher; worker failures, stalls and restarts
        are handled there); returns the trained model."""
        from ._distributed import launch

        model, train, valid, folder = start_job(self.name, model_builder, train_data, valid_data, train_config)
        warn_batch_split(model, self.name, train_config)
        return launch(self.name, model, loss, train, valid, train_config, callbacks, folder)
