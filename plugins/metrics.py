"""Metrics on predicted probabilities: ``accuracy`` and ``f1_macro``."""

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


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [Accuracy, F1Macro]
