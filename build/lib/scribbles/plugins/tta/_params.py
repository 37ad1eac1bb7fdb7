"""Shared pieces of the TTA transforms: strict params and edge/zero/wrap shifting along one axis."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict

Fill = Literal["edge", "zero", "wrap"]


class Strict(BaseModel):
    """Params that refuse unknown fields."""

    model_config = ConfigDict(extra="forbid")


def shift_axis(x: torch.Tensor, shift: int, dim: int, fill: Fill) -> torch.Tensor:
    """Move ``x`` by ``shift`` positions along ``dim`` (positive: towards higher indices).

    ``edge`` repeats the border value into the gap, ``zero`` fills it with 0 (the training mean, since
    the flow standardises inputs), ``wrap`` rolls around (exactly invertible).
    """
    if shift == 0:
        return x
    if fill == "wrap":
        return x.roll(shift, dims=dim)
    size = x.shape[dim]
    index = (torch.arange(size, device=x.device) - shift).clamp(0, size - 1)
    out = x.index_select(dim, index)
    if fill == "zero":
        gap = torch.arange(size, device=x.device)
        gap = gap < shift if shift > 0 else gap >= size + shift
        shape = [1] * x.dim()
        shape[dim] = size
        out = out.masked_fill(gap.reshape(shape), 0)
    return out
