"""Test-time augmentations: ``hflip`` for images and ``time_shift`` for sequences."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from pydantic import BaseModel, ConfigDict, Field
from scribbles.core import Technique, TTATransform, View, hookimpl


class HFlip(TTATransform):
    """Mirror images left to right (one view)."""

    name = "hflip"
    kinds = frozenset({"image"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def views(self) -> list[View]:
        return [View("hflip", lambda x: x.flip(-1))]


def shift_steps(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Shift (batch, steps, channels) along time by ``shift`` steps, repeating the edge value."""
    if shift == 0:
        return x
    steps = x.shape[1]
    index = (torch.arange(steps, device=x.device) - shift).clamp(0, steps - 1)
    return x[:, index]


class TimeShift(TTATransform):
    """Shift sequences in time by each of ``shifts`` steps, padding with the edge value."""

    name = "time_shift"
    kinds = frozenset({"sequence"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        shifts: list[int] = Field(default_factory=lambda: [-2, 2], min_length=1)

    def views(self) -> list[View]:
        return [View(f"time_shift({s})", lambda x, s=s: shift_steps(x, s)) for s in self.params.shifts]


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [HFlip, TimeShift]
