"""Metrics: ``accuracy``, ``f1_macro`` and ``log_loss`` on predicted probabilities, and
``reconstruction_mse`` on a representation model's reconstruction of its inputs."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scribbles.core import Metric, Technique, hookimpl


class Accuracy(Metric):
    """The share of rows whose most probable class is the true one."""

    name = "accuracy"

    def compute(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        return float(np.mean(proba.argmax(1) == y_true))


class F1Macro(Metric):
    """F1 per class, averaged with equal weight per class present in truth or prediction."""

    name = "f1_macro"

    def compute(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        pred = proba.argmax(1)
        classes = np.union1d(y_true, pred)
        scores = []
        for c in classes:
            tp = np.sum((pred == c) & (y_true == c))
            fp = np.sum((pred == c) & (y_true != c))
            fn = np.sum((pred != c) & (y_true == c))
            scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
        return float(np.mean(scores))


class LogLoss(Metric):
    """Mean negative log-probability of the true class (probabilities clipped at 1e-15, as scikit-learn)."""

    name = "log_loss"
    greater_is_better = False

    def compute(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        proba = np.clip(proba / proba.sum(1, keepdims=True), 1e-15, 1.0)
        return float(-np.mean(np.log(proba[np.arange(len(y_true)), y_true])))


class ReconstructionMSE(Metric):
    """Mean squared error between the standardised inputs and the model's reconstruction of them."""

    name = "reconstruction_mse"
    greater_is_better = False
    needs = "reconstruction"

    def compute(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        """``y_true``: the inputs, (rows, values); ``proba``: their reconstruction, the same shape."""
        return float(np.mean((np.asarray(proba, dtype=np.float64) - y_true) ** 2))


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [Accuracy, F1Macro, LogLoss, ReconstructionMSE]
