"""Training strategy ``sklearn``: fit a classic model (k-NN, SVM, tree, Gaussian mixture) once.

The model builder returns an ``EstimatorModule`` (a raw scikit-learn estimator is wrapped in one);
the strategy fits it on the flattened training rows and reports the loss on both sides as epoch 0,
so trackers and the evaluator see a classic model exactly as they see a torch one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from scribbles.core import ConfigError, Model, Strategy, TrainConfig, TrainResult
from scribbles.core.evaluation import EstimatorModule
from scribbles.core.training import mean_loss, seed_everything


class Sklearn(Strategy):
    """Fit a scikit-learn estimator in one pass (no epochs); the strategy of the classic models."""

    name = "sklearn"

    def check(self, config: TrainConfig, model: Model) -> None:
        """Refuse torch models and options that have no meaning for a one-pass fit."""
        if model.default_strategy != "sklearn":
            raise ConfigError(
                f"strategy 'sklearn' fits classic models (knn, svm, decision_tree, gaussian_mixture); "
                f"model '{model.name}' is a torch model: use strategy single",
                "train.strategy",
            )
        if config.workers != 1 or config.nodes != 1:
            raise ConfigError("strategy 'sklearn' runs in one process; set train.workers to 1", "train.workers")
        if config.precision != "fp32":
            raise ConfigError("classic models compute in their own precision; set train.precision: fp32",
                              "train.precision")
        if config.early_stopping is not None:
            raise ConfigError("a classic model is fitted in one pass, with no epochs to stop early; remove "
                              "train.early_stopping", "train.early_stopping")
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
        seed_everything(train_config.seed)
        built = model_builder()
        if not isinstance(built, EstimatorModule):  # a bare estimator from a third-party model
            built = EstimatorModule(built, _n_classes(train_data, valid_data))
        module = built
        train_x, train_y = train_data.tensors
        module.fit(train_x.numpy(), train_y.numpy())
        module.eval()
        device = torch.device("cpu")
        metrics = {
            "train_loss": mean_loss(module, loss, train_x, train_y, 4096, device),
            "valid_loss": mean_loss(module, loss, *valid_data.tensors, 4096, device),
        }
        for callback in callbacks:
            callback(0, metrics)
        return TrainResult(model=module, history=[metrics], world_size=1)


def _n_classes(train_data: Any, valid_data: Any) -> int:
    """Class count seen on either side (a bare estimator does not know the dataset's)."""
    return int(max(train_data.tensors[1].max(), valid_data.tensors[1].max())) + 1
