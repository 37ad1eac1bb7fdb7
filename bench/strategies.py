"""Training strategies: overhead, scaling, sharded memory, activation checkpointing, mixed precision.

Every figure is a ratio against a baseline run in the same invocation:

    P1  single step time / a bare PyTorch loop, same MLP and data                   (goal <= 1.05)
    P3  ddp 2 workers x 1 thread throughput / single with 2 threads, transformer    (goal >= 0.9)
    P4  optimizer-state bytes on the fullest rank, zero and fsdp / ddp's            (goal <= 1/N + 5%)
        (torch's ZeroRedundancyOptimizer shown for comparison: it hands whole tensors to ranks)
    P5  activation checkpointing on a deep transformer: activation bytes kept for backward
        (saved_tensors_hooks; on GPU also max_memory_allocated) and step time, / no checkpointing;
        the default setting, other policies and shares for comparison               (goal <= 0.4x at <= 1.35x)
    bf16 and fp16 step time / fp32

Needs only torch (and scribbles.core): no Prefect, MLflow or DVC on this path.

    python bench/strategies.py [--device cpu|cuda] [--repeat 3] [--skip-p3] [--only P5 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from scribbles.core import TrainConfig
from scribbles.core.registry import default_registry
from scribbles.core.training import (
    TorchStrategy,
    activation_checkpointing,
    pick_device,
    seed_everything,
    strategy_class,
    train_epoch,
    wire,
)
from torch import nn


class CrossEntropy(nn.Module):
    """The loss protocol scribbles uses: ``loss(outputs, (x, y))``."""

    def forward(self, outputs: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs, batch[1])


class Transformer(nn.Module):
    """A transformer encoder classifier over (batch, steps, features)."""

    def __init__(self, features: int, d_model: int, heads: int, layers: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Linear(features, d_model)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.0, batch_first=True)
            for _ in range(layers)
        )
        self.head = nn.Linear(d_model, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for layer in self.layers:
            h = layer(h)
        return self.head(h.mean(1))


def mlp(features: int = 64, classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Linear(features, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, classes))


def tabular(n: int = 4096, features: int = 64, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=g)
    return x, (x[:, :classes] * torch.arange(1, classes + 1)).argmax(1)


def sequences(n: int, steps: int, features: int = 16, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, steps, features, generator=g)
    return x, (x[:, :, :classes].mean(1)).argmax(1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best(fn: Callable[[], None], repeat: int, device: torch.device) -> float:
    times = []
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


# ------------------------------------------------------------------------------------------- P1


def p1(device: torch.device, repeat: int) -> None:
    x, y = tabular()
    config = TrainConfig(epochs=1, batch_size=64, lr=1e-3, device=device.type)
    loss_fn = CrossEntropy()

    def ours() -> None:
        seed_everything(0)
        engine = TorchStrategy(device)
        engine.setup(mlp(), config)
        train_epoch(engine, loss_fn, x, y, config, epoch=0)

    def bare() -> None:
        seed_everything(0)
        model = mlp().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        model.train()
        for start in range(0, len(x), 64):
            index = order[start : start + 64]
            optimizer.zero_grad()
            xb, yb = x[index].to(device), y[index].to(device)
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()

    ours(), bare()  # warm-up
    # Interleaved, so that a noisy neighbour slows both alike; the best of each is kept.
    pairs = [(best(bare, 1, device), best(ours, 1, device)) for _ in range(repeat)]
    t_bare, t_ours = min(p[0] for p in pairs), min(p[1] for p in pairs)
    steps = len(x) // 64
    print(f"P1 MLP 64-256-256-10, {steps} steps, batch 64: bare loop (baseline) {t_bare / steps * 1e3:.3f} ms/step, "
          f"single {t_ours / steps * 1e3:.3f} ms/step -> ratio {t_ours / t_bare:.3f} (goal <= 1.05)")


# ------------------------------------------------------------------------------------------- P5 + precision


#: Settings timed in P5, (policy, share); None is no checkpointing, the baseline. The default comes
#: first after it and is the one the goal is for; the others show the rest of the trade.
P5_SETTINGS: dict[str, tuple[activation_checkpointing.Policy, float | None] | None] = {
    "none": None,
    "default (full, first 3/4 of the blocks)": ("full", None),
    "full, every block but the last": ("full", 1.0),
    "selective, every block but the last": ("selective", None),
}


def p5(device: torch.device, repeat: int) -> None:
    """Same model, seed and batch under each setting; steps are timed in turns (baseline, default, ...,
    baseline, ...) so a change in machine load hits every setting alike; best of ``repeat``."""
    x, y = sequences(32, 64)
    xb, yb = x.to(device), y.to(device)
    loss_fn = CrossEntropy()
    steps, saved, peak, times = {}, {}, {}, {}
    for name, setting in P5_SETTINGS.items():
        seed_everything(0)
        model = Transformer(16, 128, 4, 12, 4).to(device)
        if setting is not None:
            activation_checkpointing.enable(model, *setting)

        def forward(model: nn.Module = model) -> torch.Tensor:
            return loss_fn(model(xb), (xb, yb))

        def step(model: nn.Module = model, forward: Callable[[], torch.Tensor] = forward) -> None:
            model.zero_grad(set_to_none=True)
            forward().backward()

        saved[name] = activation_checkpointing.saved_bytes(forward, model.parameters())
        step()  # warm-up
        peak[name] = 0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step()
            peak[name] = torch.cuda.max_memory_allocated() - base
        steps[name], times[name] = step, []
    for _ in range(repeat):
        for name in P5_SETTINGS:
            times[name].append(best(steps[name], 1, device))
    t0, b0, m0 = min(times["none"]), saved["none"], peak["none"]
    print(f"P5 transformer 12 layers d128, batch 32 x 64 steps, no checkpointing (baseline): kept for backward "
          f"{b0 / 2**20:.1f} MiB, step {t0 * 1e3:.1f} ms")
    for i, name in enumerate(list(P5_SETTINGS)[1:]):
        t1, b1, m1 = min(times[name]), saved[name], peak[name]
        goal = " (goal <= 0.4x at <= 1.35x)" if i == 0 else ""
        print(f"P5 {name}: {b1 / 2**20:.1f} MiB -> {b1 / b0:.3f}x memory; step {t1 * 1e3:.1f} ms = "
              f"{t1 / t0:.3f}x time{goal}")
        if device.type == "cuda":
            print(f"P5 {name} GPU max_memory_allocated above the weights: {m0 / 2**20:.1f} MiB -> "
                  f"{m1 / 2**20:.1f} MiB = {m1 / m0:.3f}x")


def precision(device: torch.device, repeat: int) -> None:
    x, y = sequences(256, 32)
    loss_fn = CrossEntropy()
    times = {}
    for name in ("fp32", "bf16", "fp16"):
        config = TrainConfig(epochs=1, batch_size=32, precision=name, device=device.type)
        seed_everything(0)
        engine = TorchStrategy(device)
        engine.setup(Transformer(16, 128, 4, 4, 4), config)
        train_epoch(engine, loss_fn, x, y, config, 0)  # warm-up
        times[name] = best(lambda config=config, engine=engine: train_epoch(engine, loss_fn, x, y, config, 0),
                           repeat, device)
    print(f"precision transformer 4 layers d128, 8 steps of 32 x 32: fp32 (baseline) {times['fp32']:.3f} s, "
          f"bf16 {times['bf16']:.3f} s = {times['bf16'] / times['fp32']:.3f}x, "
          f"fp16 {times['fp16']:.3f} s = {times['fp16'] / times['fp32']:.3f}x")


# ------------------------------------------------------------------------------------------- P3 + P4


P3_ROWS, P3_BATCH, P3_EPOCHS = 384, 32, 2


def p3_model() -> nn.Module:
    return Transformer(16, 128, 4, 4, 4)


def timed_epochs(engine: TorchStrategy, config: TrainConfig) -> float:
    """Seconds per epoch after one warm-up epoch."""
    x, y = sequences(P3_ROWS, 32)
    train_epoch(engine, CrossEntropy(), x, y, config, 0)
    start = time.perf_counter()
    for epoch in range(1, P3_EPOCHS + 1):
        train_epoch(engine, CrossEntropy(), x, y, config, epoch)
    sync(engine.device)
    return (time.perf_counter() - start) / P3_EPOCHS


def worker(out: Path, skip_p3: bool) -> None:
    """Runs under torch.distributed.run: DDP timing (P3) and optimizer-state bytes per rank (P4)."""
    import torch.distributed as dist
    from torch.distributed.optim import ZeroRedundancyOptimizer

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cpu")
    results: dict[str, float] = {}
    config = TrainConfig(epochs=1, batch_size=P3_BATCH, lr=1e-3)
    if not skip_p3:
        seed_everything(0)
        engine = strategy_class("ddp", default_registry())(device, rank, world)
        engine.setup(p3_model(), config)
        results["ddp_epoch_s"] = timed_epochs(engine, config)
    x, y = tabular(256)
    for name, build in (("mlp", mlp), ("transformer", lambda: Transformer(64, 128, 4, 4, 10))):
        inputs = x if name == "mlp" else x.reshape(len(x), 4, 16).repeat(1, 1, 4)
        for strategy in ("ddp", "zero", "fsdp"):
            seed_everything(0)
            engine = strategy_class(strategy, default_registry())(device, rank, world)
            engine.setup(build(), config)
            train_epoch(engine, CrossEntropy(), inputs[:64], y[:64], config, 0)
            results[f"{name}_{strategy}"] = max(wire.all_gather_json(engine.optimizer_bytes(), device))
        seed_everything(0)
        model = build()
        zro = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.Adam, lr=1e-3)
        nn.functional.cross_entropy(model(inputs[:8]), y[:8]).backward()
        zro.step()
        own = sum(v.numel() * v.element_size() for s in zro.optim.state.values() for v in s.values()
                  if isinstance(v, torch.Tensor))
        results[f"{name}_torch_zero"] = max(wire.all_gather_json(own, device))
    if rank == 0:
        out.write_text(json.dumps(results))
    dist.destroy_process_group()


def p3_p4(device: torch.device, workers: int, skip_p3: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(workers),
                   __file__, "--worker", str(out)] + (["--skip-p3"] if skip_p3 else [])
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        results = json.loads(out.read_text())
    if not skip_p3:
        torch.set_num_threads(workers)
        seed_everything(0)
        config = TrainConfig(epochs=1, batch_size=P3_BATCH, lr=1e-3)
        engine = TorchStrategy(torch.device("cpu"))
        engine.setup(p3_model(), config)
        single = timed_epochs(engine, config)
        torch.set_num_threads(1)
        print(f"P3 transformer 4 layers d128, {P3_ROWS} rows, batch {P3_BATCH}, CPU: single with {workers} threads "
              f"(baseline) {single:.2f} s/epoch, ddp {workers} workers x 1 thread {results['ddp_epoch_s']:.2f} "
              f"s/epoch -> throughput ratio {single / results['ddp_epoch_s']:.3f} (goal >= 0.9)")
    goal = 1 / workers + 0.05
    for name in ("mlp", "transformer"):
        ddp = results[f"{name}_ddp"]
        parts = ", ".join(f"{s} {results[f'{name}_{s}'] / ddp:.3f}" for s in ("zero", "fsdp", "torch_zero"))
        print(f"P4 {name} ({ddp / 2**10:.0f} KiB of Adam state under ddp, baseline), fullest of {workers} ranks / "
              f"ddp: {parts} (goal <= {goal:.3f}; torch_zero is torch's ZeroRedundancyOptimizer)")


PARTS = ("P1", "P5", "precision", "P3", "P4")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-p3", action="store_true", help="no DDP timing (P4 still runs, on the CPU)")
    parser.add_argument("--only", nargs="+", choices=PARTS, metavar="PART",
                        help=f"run only these parts ({', '.join(PARTS)}; P3 also prints P4); default all")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.skip_p3)
        return
    device = pick_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    print(f"device {device}{' ' + torch.cuda.get_device_name() if device.type == 'cuda' else ''}, "
          f"torch {torch.__version__}, best of {args.repeat}")
    only = set(args.only or PARTS)
    if "P1" in only:
        p1(device, args.repeat)
    if "P5" in only:
        p5(device, args.repeat)
    if "precision" in only:
        precision(device, args.repeat)
    if only & {"P3", "P4"}:
        # P3 compares CPU processes with CPU threads; P4 counts bytes, which do not depend on the device.
        p3_p4(device, args.workers, args.skip_p3 or "P3" not in only)


if __name__ == "__main__":
    main()
