"""The epoch loop of every torch strategy, the same code for one process and for N ranks, and
``train_single``, which runs it in this process.

World-size invariance: the row order of an epoch depends on the seed and the epoch only; each global
batch of ``train.batch_size`` rows is cut into ``world`` near-equal parts (rank r takes part r, so
no row is padded or repeated, unlike DistributedSampler), and every micro-batch's loss is weighted
by its share of the global batch times ``world`` because DDP and FSDP average gradients over ranks.
The sum is then exactly the mean gradient over the global batch, as in one process.

Every rank runs the same number of forward and backward passes (collectives must match): a rank
whose part of a short last batch is empty runs one row of the batch with weight zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..contracts import TrainResult
from ..errors import Diverged
from . import _checkpoint as checkpoints
from ._early_stopping import Stopper
from ._torch_strategy import TorchStrategy
from ._training import autocast, batches, cpu_threads, epoch_order, pick_device

Report = Callable[[int, Mapping[str, float]], None]


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The torch seed of one rank in one epoch, so that a resumed epoch draws the same dropout masks."""
    return (seed * 1_000_003 + epoch * 7919 + rank * 104_729) % 2**63


def rank_part(batch_index: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s rows of one global batch: near-equal contiguous parts, nothing padded."""
    return batch_index if world == 1 else batch_index.tensor_split(world)[rank]


def _micro_batches(part: torch.Tensor, accumulation: int, world: int) -> list[torch.Tensor]:
    micros = list(part.tensor_split(accumulation)) if accumulation > 1 else [part]
    if world == 1:
        return [m for m in micros if len(m)] or micros[:1]
    return micros


def train_epoch(strategy: TorchStrategy, loss_fn: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                config: TrainConfig, epoch: int, beat: Callable[[], None] | None = None) -> float:
    """One epoch of optimizer steps; returns the mean training loss over every row (all ranks)."""
    device, world = strategy.device, strategy.world
    strategy.module.train()
    n = len(inputs)
    # The loss sum stays on the device: reading it every step would stall a GPU at every step.
    total = torch.zeros((), dtype=torch.float64, device=device)
    for batch_index in batches(n, config.batch_size, epoch_order(n, config.seed, epoch)):
        strategy.zero_grad()
        micros = _micro_batches(rank_part(batch_index, strategy.rank, world), config.grad_accumulation, world)
        for i, micro in enumerate(micros):
            rows = micro if len(micro) else batch_index[:1]
            weight = len(micro) / len(batch_index) * world
            x, y = inputs[rows].to(device, non_blocking=True), targets[rows].to(device, non_blocking=True)
            # Gradients are synchronised on the last micro-batch only (no_sync on the others).
            with strategy.sync(i == len(micros) - 1):
                with autocast(device, config.precision):
                    loss = loss_fn(strategy.module(x), (x, y))
                strategy.scaler.scale(loss if weight == 1.0 else loss * weight).backward()
            total += loss.detach() * len(micro)
        strategy.step()
        if beat is not None:
            beat()
    (summed,) = strategy.all_reduce([float(total)])
    return summed / max(n, 1)


def valid_loss(strategy: TorchStrategy, loss_fn: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
               batch_size: int) -> float:
    """The loss over every validation row, each rank computing its part of each batch."""
    module, device, world = strategy.eval_module, strategy.device, strategy.world
    module.eval()
    n = len(inputs)
    total = 0.0
    with torch.no_grad():
        for batch_index in batches(n, batch_size, torch.arange(n)):
            part = rank_part(batch_index, strategy.rank, world)
            rows = part if len(part) else batch_index[:1]
            x, y = inputs[rows].to(device), targets[rows].to(device)
            total += float(loss_fn(module(x), (x, y))) * len(part)
    (summed,) = strategy.all_reduce([total])
    return summed / max(n, 1)


def run(
    strategy: TorchStrategy,
    loss_fn: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    valid: tuple[torch.Tensor, torch.Tensor],
    config: TrainConfig,
    *,
    saved: Mapping[str, Any] | None = None,
    checkpointing: bool = False,
    save: Callable[[dict[str, Any]], None] | None = None,
    report: Report | None = None,
    beat: Callable[[], None] | None = None,
) -> list[dict[str, float]]:
    """Train from scratch, or from the checkpoint ``saved``, to ``config.epochs``; returns the history.

    With ``checkpointing`` every rank takes part in gathering the state after each epoch and the
    writer rank hands it to ``save`` (which writes it atomically) before the epoch is reported.
    ``train.early_stopping`` may end training before ``config.epochs`` (core/training/_early_stopping.py).
    """
    start, history = 0, []
    if saved is not None:
        strategy.load_state_dict(dict(saved))
        start, history = int(saved["epoch"]) + 1, [dict(h) for h in saved["history"]]
    stopper = Stopper(config.early_stopping, saved) if config.early_stopping else None
    for epoch in range(start, config.epochs):
        if stopper is not None and stopper.stopped(history):
            break  # train.early_stopping (checked first: a resumed fold may have stopped already)
        torch.manual_seed(epoch_seed(config.seed, epoch, strategy.rank))
        train_loss = train_epoch(strategy, loss_fn, *train, config, epoch, beat)
        if not math.isfinite(train_loss):
            raise Diverged(f"train_loss is {train_loss} at epoch {epoch}; lower train.lr")
        metrics = {"train_loss": train_loss,
                   "valid_loss": valid_loss(strategy, loss_fn, *valid, config.batch_size)}
        history.append(metrics)
        if stopper is not None:
            stopper.epoch_end(strategy.model, history)
        if checkpointing:
            state = strategy.state_dict()
            if state is not None and save is not None:
                save({**state, "epoch": epoch, "history": history, **(stopper.checkpoint() if stopper else {})})
        if report is not None and strategy.is_writer:
            report(epoch, metrics)
    if stopper is not None:
        stopper.finish(strategy.model, history)
    strategy.module.eval()
    return history


def train_single(
    model: nn.Module,
    loss_fn: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    valid: tuple[torch.Tensor, torch.Tensor],
    config: TrainConfig,
    callbacks: Sequence[Report] = (),
    checkpoint: Path | None = None,
) -> TrainResult:
    """Train ``model`` in this process for ``config.epochs`` epochs; report each epoch to callbacks.

    With ``checkpoint`` a checkpoint is written there after every epoch, and training resumes from
    it when it exists (its earlier epochs are reported again, from the saved history).
    """
    device = pick_device(config.device)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(config))
    strategy = TorchStrategy(device)
    strategy.setup(model, config)
    saved = checkpoints.load_or_set_aside(checkpoint) if checkpoint is not None else None

    def report(epoch: int, metrics: Mapping[str, float]) -> None:
        for callback in callbacks:
            callback(epoch, metrics)

    if saved is not None:
        for epoch, metrics in enumerate(saved["history"]):
            report(epoch, metrics)
    history = run(
        strategy, loss_fn, train, valid, config, saved=saved, checkpointing=checkpoint is not None,
        save=(lambda state: checkpoints.atomic_save(state, checkpoint)) if checkpoint is not None else None,
        report=report,
    )
    return TrainResult(model=strategy.model.cpu(), history=history, world_size=1)
