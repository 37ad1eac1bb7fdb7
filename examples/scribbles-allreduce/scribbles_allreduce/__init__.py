"""``allreduce``: data parallel without DDP, gradients all-reduced parameter by parameter before each step.

Slower than ``ddp`` (no bucketing, no overlap of communication with backward) but short enough to read:
it shows how a strategy plugin owns its mechanics (a ``TorchStrategy`` subclass) while scribbles keeps
the training loop, the launcher and checkpointing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch.distributed as dist
from pydantic import BaseModel, ConfigDict, Field
from scribbles.core import Technique, hookimpl
from scribbles.core.training import LaunchedStrategy, TorchStrategy

#: The scribbles plugin API this module is written for.
SCRIBBLES_API_VERSION = 1


class AllReduceGradients(TorchStrategy):
    """Each worker keeps a full replica; gradients are averaged (or summed) over the workers before the step.

    ``self.params`` is the ``AllReduce.Params`` that ``train.strategy: {name: allreduce, reduce: sum}`` gave.
    """

    def step(self) -> None:
        if self.world > 1:
            for param in self.model.parameters():
                if param.grad is not None:
                    dist.all_reduce(param.grad, group=self.group)
                    if self.params.reduce == "mean":
                        param.grad /= self.world
        super().step()


class AllReduce(LaunchedStrategy):
    """Data parallel by all-reducing every gradient before the step (an example third-party strategy)."""

    name = "allreduce"
    torch_strategy = AllReduceGradients

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        reduce: Literal["mean", "sum"] = Field("mean", description="average the gradients (as DDP), or sum them")


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [AllReduce]
