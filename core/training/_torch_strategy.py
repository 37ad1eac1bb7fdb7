"""``TorchStrategy``: how one process takes part in training (Lightning's ``Strategy``).

The base class is one process on the CPU or one GPU (strategy ``single``) and the reference every
other torch strategy must match. A distributed strategy plugin (``ddp``, ``zero``, ``fsdp`` in
``scribbles.plugins.strategies``, or a third-party one) subclasses it in its own module and names the
subclass in its technique's ``torch_strategy``; the worker under the launcher gets it from the
registry by the strategy's name (core/training/_distributed.py). The training loop (core/training/_loop.py) is the same
for all of them.

Every strategy saves and loads the same checkpoint layout (see core/training/_checkpoint.py), so a checkpoint
never depends on the strategy or the world size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..config import TrainConfig
from . import _activation_checkpointing as activation_checkpointing
from ._training import make_optimizer


def state_options(**kwargs: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


class TorchStrategy:
    """One process on the CPU or one GPU: the reference the distributed strategies must match.

    ``rank``/``world`` place this process in the job; ``writer`` is the rank that writes checkpoints,
    metrics and the final weights; ``group`` is the process group (None: the default one). ``params``: in
    a launched worker, the strategy technique's validated ``Params`` (``train.strategy: {name: ...,
    <params>}``), set before ``setup``; None where no technique made it.
    """

    strategy = "single"
    params: Any = None

    def __init__(self, device: torch.device, rank: int = 0, world: int = 1, writer: int = 0,
                 group: Any = None) -> None:
        self.device, self.rank, self.world, self.writer, self.group = device, rank, world, writer, group
        self.model: nn.Module
        self.module: nn.Module
        self.optimizer: Any
        self.scaler: Any

    @property
    def is_writer(self) -> bool:
        """Whether this rank writes checkpoints, metrics and the final weights.

        Lightning's ``is_global_zero``, except that the writer is the lowest rank that holds the job
        folder, which on several machines need not be rank 0 (core/training/_distributed.py ``Group``).
        """
        return self.rank == self.writer

    def setup(self, model: nn.Module, config: TrainConfig) -> None:
        """Move, checkpoint, wrap ``model``; build the optimizer and the loss scaler."""
        self.model = model.to(self.device)
        if config.activation_checkpointing:
            activation_checkpointing.enable(self.model, config.activation_checkpointing,
                                            config.activation_checkpointing_share)
        self.module = self._wrap(self.model)
        self.optimizer = self._optimizer(config)
        self.scaler = self._scaler(config.precision == "fp16")

    def _wrap(self, model: nn.Module) -> nn.Module:
        return model

    def _optimizer(self, config: TrainConfig) -> Any:
        return make_optimizer(self.model, config)

    def _scaler(self, enabled: bool) -> Any:
        # GradScaler multiplies the loss so fp16 gradients do not underflow; it skips inf/NaN steps
        # and halves the scale when it finds one.
        return torch.amp.GradScaler(self.device.type, enabled=enabled)

    @property
    def eval_module(self) -> nn.Module:
        """The module for evaluation forwards (no gradient synchronisation involved)."""
        return self.module

    def sync(self, enabled: bool) -> contextlib.AbstractContextManager[Any]:
        """Whether the backward pass inside synchronises gradients (off on accumulating micro-batches)."""
        return contextlib.nullcontext()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        """One optimizer step, through the loss scaler under fp16."""
        if not self.scaler.is_enabled():
            self.optimizer.step()
            return
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def all_reduce(self, values: Sequence[float]) -> list[float]:
        """``values`` summed over every rank (``torch.distributed.all_reduce`` with ``SUM``, in float64)."""
        if self.world == 1:
            return list(values)
        device = self.device if self.device.type == "cuda" else torch.device("cpu")
        tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
        dist.all_reduce(tensor, group=self.group)
        return tensor.tolist()

    def state_dict(self) -> dict[str, Any] | None:
        """Model and optimizer state in the checkpoint layout on the writer, ``None`` elsewhere (collective)."""
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optim_state = get_state_dict(self.model, self.optimizer, options=self._save_options())
        if not self.is_writer:
            return None
        return {"model": model_state, "optimizer": optim_state, "scaler": self.scaler.state_dict()}

    def _save_options(self) -> Any:
        return state_options()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load a checkpoint written by any strategy at any world size (every rank calls it)."""
        from torch.distributed.checkpoint.state_dict import set_state_dict

        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"], options=state_options())
        self.scaler.load_state_dict(state.get("scaler") or {})

    def model_state(self) -> dict[str, torch.Tensor] | None:
        """The full trained weights on the writer (collective), on the CPU."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        state = get_model_state_dict(self.model, options=self._save_options())
        return {k: v.detach().cpu() for k, v in state.items()} if self.is_writer else None

    def optimizer_bytes(self) -> int:
        """Bytes of optimizer state this rank holds."""
        total = 0
        for state in self.optimizer.state.values():
            for value in state.values():
                if isinstance(value, torch.Tensor):
                    local = value.to_local() if hasattr(value, "to_local") else value
                    total += local.numel() * local.element_size()
        return total
