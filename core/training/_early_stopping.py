"""Early stopping inside a fold: stop when the watched loss has not improved for ``patience`` epochs.

Every decision is a pure function of the epoch history (``train.early_stopping.metric`` of each epoch,
lower is better), the way Keras' ``EarlyStopping`` and Lightning's ``EarlyStopping`` callback decide:
an epoch improves when its value is below the best so far by more than ``min_delta``; training stops
after ``patience`` epochs in a row without an improvement. Because the history is the same on every
rank (the losses are all-reduced) and is saved in each checkpoint, ranks agree on the stopping epoch
and a resumed fold stops where an uninterrupted one would.

With ``restore_best`` the weights of the best epoch are kept (gathered full, on the CPU, on every rank)
and loaded back when training ends, so the fold's final metrics are those of the best epoch; the copy
is written into each checkpoint (``best_model``) so that it survives a kill and resume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..config import EarlyStoppingConfig


def best_epoch(history: Sequence[Mapping[str, float]], config: EarlyStoppingConfig) -> int:
    """The index of the best epoch of ``history`` (the last improvement); -1 for an empty history."""
    best, best_value = -1, float("inf")
    for epoch, metrics in enumerate(history):
        value = float(metrics[config.metric])
        if best < 0 or value < best_value - config.min_delta:
            best, best_value = epoch, value
    return best


def should_stop(history: Sequence[Mapping[str, float]], config: EarlyStoppingConfig) -> bool:
    """Whether ``patience`` epochs have passed since the best epoch of ``history``."""
    return bool(history) and len(history) - 1 - best_epoch(history, config) >= config.patience


def record(history: Sequence[Mapping[str, float]], config: EarlyStoppingConfig, epochs: int) -> dict[str, float]:
    """What a fold reports about its stop: ``stopped_epoch`` (the last epoch trained, 0-based; the last
    epoch of ``train.epochs`` when it never stopped early), ``best_epoch``, and ``stopped_early`` (0 or 1)."""
    return {"stopped_epoch": float(len(history) - 1), "best_epoch": float(best_epoch(history, config)),
            "stopped_early": float(len(history) < epochs)}


def full_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's full weights on the CPU, on every rank (a collective for a sharded model)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    return {name: value.detach().cpu().clone() for name, value in state.items()}


def load_weights(model: torch.nn.Module, weights: Mapping[str, torch.Tensor]) -> None:
    """Load full weights (from ``full_weights``) into the model on every rank (sharded or not)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, dict(weights), options=StateDictOptions(full_state_dict=True))


class Stopper:
    """The loop's hook: ``saved`` is a checkpoint (its ``best_model`` is restored), ``epoch_end`` keeps
    the best weights and says whether to stop, ``finish`` loads them back with ``restore_best``."""

    def __init__(self, config: EarlyStoppingConfig, saved: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.best: dict[str, torch.Tensor] | None = None
        if saved is not None and saved.get("best_model") is not None:
            self.best = dict(saved["best_model"])

    def stopped(self, history: Sequence[Mapping[str, float]]) -> bool:
        """Whether training must stop before another epoch."""
        return should_stop(history, self.config)

    def epoch_end(self, model: torch.nn.Module, history: Sequence[Mapping[str, float]]) -> None:
        """After each epoch (every rank): keep the weights when this epoch is the best so far."""
        if self.config.restore_best and best_epoch(history, self.config) == len(history) - 1:
            self.best = full_weights(model)

    def checkpoint(self) -> dict[str, Any]:
        """What a checkpoint adds: the best weights so far (with ``restore_best``)."""
        return {"best_model": self.best} if self.config.restore_best and self.best is not None else {}

    def finish(self, model: torch.nn.Module, history: Sequence[Mapping[str, float]]) -> None:
        """With ``restore_best``, load the best epoch's weights unless the last epoch is the best."""
        if self.config.restore_best and self.best is not None and best_epoch(history, self.config) != len(history) - 1:
            load_weights(model, self.best)
