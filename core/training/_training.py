"""Training helpers the torch strategies share: seeding, devices, batch order, optimizers, autocast.

Imports torch only (no other scribbles module but the config), so it runs on a bare GPU box; the loop
itself is in core/training/_loop.py.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a model built next starts from the same weights."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(choice: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def cpu_threads(config: TrainConfig) -> int:
    """Threads torch may use on the CPU: ``train.threads``, else 1.

    One thread by default because small models gain little from more, while OpenMP's spin-waiting
    threads next to Prefect's server and event-loop threads on a 2-core machine made a GRU epoch 20x
    slower (272 s against 27 s for the demo, measured).
    """
    return config.threads or 1


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The row order of one epoch: a function of seed and epoch only, never of the world size."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def batches(n: int, batch_size: int, order: torch.Tensor) -> Iterator[torch.Tensor]:
    """Index batches of ``order``, the last one possibly short."""
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def make_optimizer(model: nn.Module | Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``train.optimizer`` over a model's (or the given) trainable parameters."""
    source = model.parameters() if isinstance(model, nn.Module) else model
    params = [p for p in source if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """Autocast for bf16/fp16, a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def mean_loss(
    model: nn.Module,
    loss_fn: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> float:
    """The loss averaged over every row, in evaluation mode and without gradients."""
    model.eval()
    total, n = 0.0, len(inputs)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            x = inputs[start : start + batch_size].to(device)
            y = targets[start : start + batch_size].to(device)
            total += float(loss_fn(model(x), (x, y))) * len(x)
    return total / max(n, 1)
