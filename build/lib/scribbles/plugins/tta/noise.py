"""Seeded additive noise: ``noise`` for images and tabular rows, ``jitter`` for sequences."""

from __future__ import annotations

import torch
from pydantic import Field
from scribbles.core import Seed, TTATransform, View

from ._params import Strict


def seeded_noise(x: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    """``x`` plus Gaussian noise drawn on the CPU from ``seed`` (the same on every device and call).

    The noise depends on the block's shape and the seed only, so the evaluator's batched and loop
    modes, which see the same blocks, add the same noise.
    """
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float32)
    return x + std * noise.to(device=x.device, dtype=x.dtype)


class _NoiseParams(Strict):
    std: float = Field(0.05, gt=0, description="noise standard deviation, in standardised units")
    copies: int = Field(2, ge=1, description="noisy views, each with its own seed")
    seed: Seed = 0


class Noise(TTATransform):
    """Add seeded Gaussian noise of ``std`` (standardised units) in each of ``copies`` views."""

    name = "noise"
    kinds = frozenset({"image", "tabular"})
    Params = _NoiseParams

    def views(self) -> list[View]:
        std, seed = self.params.std, self.params.seed
        return [
            View(f"noise({copy})", lambda x, s=seed * 1000 + copy: seeded_noise(x, std, s))
            for copy in range(self.params.copies)
        ]


class Jitter(TTATransform):
    """Add seeded Gaussian noise to every time step, in each of ``copies`` views."""

    name = "jitter"
    kinds = frozenset({"sequence"})
    Params = _NoiseParams

    def views(self) -> list[View]:
        std, seed = self.params.std, self.params.seed
        return [
            View(f"jitter({copy})", lambda x, s=seed * 1000 + copy: seeded_noise(x, std, s))
            for copy in range(self.params.copies)
        ]
