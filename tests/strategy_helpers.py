"""Tiny data, model and launch helpers for the strategy tests (real gloo processes, kept small)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import torch
from scribbles.core import ModelSpec, TrainConfig, create
from scribbles.core.training import checkpoint as checkpoints
from scribbles.core.training import launcher_command, seed_everything, train_single, write_job

SPEC = ModelSpec("tabular", (6,), 3)
BASE = {"epochs": 2, "batch_size": 8, "lr": 1e-2, "seed": 0}


def data(n: int = 42, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` rows of 6 features, 3 classes; 42 rows leave a last batch of 2, so 4 workers see empty parts."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return x, (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()


TRAIN, VALID = data(), data(20, 1)


def build(dropout: float = 0.0) -> torch.nn.Module:
    """A seeded MLP of a few hundred parameters."""
    seed_everything(0)
    return create("model", "mlp", hidden=[16, 8], dropout=dropout).build(SPEC)


def loss() -> torch.nn.Module:
    return create("loss", "cross_entropy").build(SPEC)


def vector(model: torch.nn.Module) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()


def single(**options: Any) -> torch.Tensor:
    """Final weights of the in-process reference run."""
    config = TrainConfig(**{**BASE, **options})
    return vector(train_single(build(), loss(), TRAIN, VALID, config).model)


def launch_jobs(tmp: Path, world: int, jobs: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, torch.Tensor]:
    """Run several jobs (name -> (strategy, train options)) in ONE launch of ``world`` gloo workers.

    The worker runs the job folders one after another in the same process group, which keeps the
    number of (slow) process starts in the tests down. Returns each job's final weights.
    """
    folders = []
    for name, (strategy, options) in jobs.items():
        folder = tmp / f"w{world}-{name}"
        write_job(folder, strategy, build(), loss(), TRAIN, VALID, TrainConfig(**{**BASE, **options,
                                                                              "workers": world}))
        folders.append(str(folder))
    done = subprocess.run(launcher_command(folders, world), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = {}
    for name, folder in zip(jobs, folders, strict=True):
        model = build()
        model.load_state_dict(checkpoints.load(Path(folder) / "final.pt")["model"])
        out[name] = vector(model)
    return out
