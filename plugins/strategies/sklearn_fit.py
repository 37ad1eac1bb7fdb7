"""``sklearn``: fit a classic model (a scikit-learn estimator) in this process.

The contract for classic model plugins: a ``model`` technique that sets ``default_strategy =
"sklearn"`` and whose ``build(spec)`` returns an unfitted estimator with ``fit(X, y)`` and
``predict_proba(X)`` (or only ``predict(X)``). X is float32 of shape (rows, features) - each row's
standardised features, flattened - and y holds int64 class positions 0 .. spec.n_classes - 1.
The fitted estimator is returned wrapped as a torch module giving log-probabilities, so evaluation,
test-time augmentation and metrics treat it as any other model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scribbles.core import ConfigError, Model, Strategy, TrainConfig, TrainResult
from torch import nn

from .checks import is_classic


class EstimatorModule(nn.Module):
    """A fitted estimator seen as a torch module: ``forward(x)`` is the log of its class probabilities."""

    def __init__(self, estimator: Any, n_classes: int) -> None:
        super().__init__()
        self.estimator = estimator
        self.n_classes = n_classes
        # Evaluation reads the device from the first parameter; this one is empty and never trained.
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(rows, n_classes) probabilities, columns in class-position order."""
        rows = x.reshape(len(x), -1)
        classes = np.asarray(getattr(self.estimator, "classes_", np.arange(self.n_classes))).astype(np.int64)
        out = np.zeros((len(rows), self.n_classes), dtype=np.float64)
        if hasattr(self.estimator, "predict_proba"):
            out[:, classes] = self.estimator.predict_proba(rows)
        else:
            out[np.arange(len(rows)), np.asarray(self.estimator.predict(rows), dtype=np.int64)] = 1.0
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proba = self.probabilities(x.detach().cpu().numpy())
        return torch.from_numpy(proba).float().clamp_min(1e-12).log().to(x.device)


def _seed(estimator: Any, seed: int) -> None:
    params = estimator.get_params() if hasattr(estimator, "get_params") else {}
    if "random_state" in params and params["random_state"] is None:
        estimator.set_params(random_state=seed)


class Sklearn(Strategy):
    """Fit a classic model (a scikit-learn estimator) in one process; the default for classic models."""

    name = "sklearn"

    def check(self, config: TrainConfig, model: Model) -> None:
        """Only classic models, one process, fp32, no activation checkpointing."""
        if not is_classic(model):
            raise ConfigError(f"strategy 'sklearn' fits classic models; model '{model.name}' is a torch model: "
                              "use single, ddp, zero or fsdp (or leave train.strategy out)", "train.strategy")
        if config.workers != 1 or config.nodes != 1:
            raise ConfigError("strategy 'sklearn' fits in one process; set train.workers: 1", "train.workers")
        if config.precision != "fp32":
            raise ConfigError("classic models compute in their own precision; set train.precision: fp32",
                              "train.precision")
        if config.activation_checkpointing:
            raise ConfigError("classic models have no activations to checkpoint; set it to false",
                              "train.activation_checkpointing")

    def fit(
        self,
        model_builder: Callable[[], Any],
        loss: torch.nn.Module,
        train_data: Any,
        valid_data: Any,
        train_config: TrainConfig,
        callbacks: Sequence[Callable[[int, Mapping[str, float]], None]] = (),
    ) -> TrainResult:
        estimator = model_builder()
        if not callable(getattr(estimator, "fit", None)):
            raise ConfigError(f"the classic model built {type(estimator).__name__}, which has no fit(); "
                              "a classic model's build() must return a scikit-learn estimator", "model.name")
        _seed(estimator, train_config.seed)
        (x, y), (vx, vy) = train_data.tensors, valid_data.tensors
        rows = x.reshape(len(x), -1).numpy()
        estimator.fit(rows, y.numpy())
        n_classes = int(max(int(y.max()), int(vy.max()) if len(vy) else 0)) + 1
        n_classes = int(getattr(estimator, "scribbles_n_classes", n_classes))
        module = EstimatorModule(estimator, n_classes).eval()
        with torch.no_grad():
            metrics = {"train_loss": float(loss(module(x), (x, y))),
                       "valid_loss": float(loss(module(vx), (vx, vy))) if len(vx) else float("nan")}
        for callback in callbacks:
            callback(0, metrics)
        return TrainResult(model=module, history=[metrics], world_size=1)

