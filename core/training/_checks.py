"""Checks every torch strategy runs at resolve time, so a config that cannot train fails before any work.

In core, not in the strategy plugins: ``LaunchedStrategy.check`` runs them, so a third-party strategy gets
the same refusals (a missing GPU, an unsupported precision) as the built-in ones.
"""

from __future__ import annotations

import warnings

import torch

from ..config import TrainConfig
from ..contracts import Model
from ..errors import ConfigError

CLASSIC = "sklearn"


def is_classic(model: Model) -> bool:
    """Whether ``model`` builds a scikit-learn estimator (fitted by strategy ``sklearn``)."""
    return model.default_strategy == CLASSIC


def device_type(config: TrainConfig) -> str:
    """The device type training would use; a ConfigError when the one asked for is missing."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("cuda asked for but torch sees no CUDA GPU here; use device: auto or cpu",
                          "train.device")
    return "cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu"


def autocast_supported(device: str, precision: str) -> bool:
    """Whether autocast to ``precision`` works on ``device`` (torch disables it, with a warning, if not)."""
    if precision == "fp32":
        return True
    if device == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        return False
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.autocast(device_type=device, dtype=dtype):
                return torch.is_autocast_enabled(device)
        except RuntimeError:
            return False


def check_torch(strategy: str, config: TrainConfig, model: Model) -> None:
    """What every torch strategy refuses: classic models, a missing device, an unsupported precision."""
    if is_classic(model):
        raise ConfigError(
            f"strategy '{strategy}' trains torch models, but model '{model.name}' is a classic scikit-learn "
            f"model; use strategy sklearn (or leave train.strategy out)", "train.strategy")
    device = device_type(config)
    if not autocast_supported(device, config.precision):
        raise ConfigError(f"{config.precision} is not supported on this {device}; use fp32"
                          + (" or fp16" if device == "cuda" else ""), "train.precision")
