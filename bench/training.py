"""Training-loop overhead: scribbles' ``single`` strategy against a bare PyTorch loop.

Both train the same GRU on the same synthetic activity-shaped data (2,400 windows of 32 x 3) for the
same epochs, batch size and seed, in this process. Prints seconds and the ratio scribbles / bare:
1.00 means the strategy adds nothing. Runs where only torch is installed (CPU or one GPU).

    python bench/training.py [--epochs 3] [--device cpu|cuda] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from scribbles.core import ModelSpec, TrainConfig, create
from scribbles.core.training import pick_device, seed_everything, train_single
from torch import nn


def data(n: int = 2400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 32, 3, generator=generator)
    y = (x[:, :, 0].mean(1) > 0).long() + 2 * (x[:, :, 1].std(1) > 1).long()
    return x, y


def bare_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
              device: torch.device) -> None:
    """The loop a practitioner writes by hand: shuffle, forward, loss, backward, step."""
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for start in range(0, len(x), config.batch_size):
            index = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[index].to(device)), y[index].to(device))
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            loss_fn(model(x[:480].to(device)), y[:480].to(device))
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    config = TrainConfig(epochs=args.epochs, batch_size=64, lr=3e-3, device=args.device)
    device = pick_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # the same thread budget for both loops
    x, y = data()
    spec = ModelSpec("sequence", (32, 3), 4)
    model_technique = create("model", "gru")
    loss = create("loss", "cross_entropy").build(spec)
    ours, bare = [], []
    for _ in range(args.repeat):
        seed_everything(0)
        start = time.perf_counter()
        train_single(model_technique.build(spec), loss, (x, y), (x[:480], y[:480]), config)
        if device.type == "cuda":
            torch.cuda.synchronize()
        ours.append(time.perf_counter() - start)
        seed_everything(0)
        start = time.perf_counter()
        bare_loop(model_technique.build(spec), x, y, config, device)
        bare.append(time.perf_counter() - start)
    best_ours, best_bare = min(ours), min(bare)
    print(f"device {device}, GRU 2400x32x3, {args.epochs} epochs, batch 64, best of {args.repeat}")
    print(f"bare PyTorch loop (baseline): {best_bare:.3f} s")
    print(f"scribbles single strategy:    {best_ours:.3f} s")
    print(f"ratio scribbles / bare: {best_ours / best_bare:.2f}")


if __name__ == "__main__":
    main()
