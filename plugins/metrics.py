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


def _labels(proba: np.ndarray) -> list[int]:
    return list(range(proba.shape[1]))


class BalancedAccuracy(Metric):
    """Recall averaged over the classes present in truth (scikit-learn's balanced_accuracy_score): chance is
    1 / classes whatever the imbalance."""

    name = "balanced_accuracy"

    def compute(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        import warnings

        from sklearn.metrics import balanced_accuracy_score

        with warnings.catch_warnings():
            # A fold (or group) whose valid rows lack some predicted class: scikit-learn warns per call ("y_pred
            # contains classes not in y_true"), lines in the user's output; the score is defined as documented.
            warnings.simplefilter("ignore", UserWarning)
            return float(balanced_accuracy_score(y_true, proba.argmax(1)))


class PrecisionMacro(Metric):
    """Precision per class, averaged with equal weight (scikit-learn's precision_score, average='macro';
    a class never predicted scores 0)."""

    name = "precision_macro"

    def compute(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        from sklearn.metrics import precision_score

        present = sorted(set(np.unique(y_true)) | set(np.unique(proba.argmax(1))))
        return float(precision_score(y_true, proba.argmax(1), labels=present, average="macro", zero_division=0))


class RecallMacro(Metric):
    """Recall per class, averaged with equal weight over the classes in truth or prediction (scikit-learn's
    recall_score, average='macro')."""

    name = "recall_macro"

    def compute(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        from sklearn.metrics import recall_score

        present = sorted(set(np.unique(y_true)) | set(np.unique(proba.argmax(1))))
        return float(recall_score(y_true, proba.argmax(1), labels=present, average="macro", zero_division=0))


class RocAuc(Metric):
    """Area under the ROC curve, one class against the rest, averaged with equal weight over the classes
    that occur in truth (scikit-learn's roc_auc_score per class); 0.5 is chance, 1 a perfect ranking."""

    name = "roc_auc"

    def compute(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        from sklearn.metrics import roc_auc_score

        scores = [roc_auc_score(y_true == c, proba[:, c]) for c in _labels(proba)
                  if 0 < np.sum(y_true == c) < len(y_true)]
        return float(np.mean(scores)) if scores else float("nan")


# ---------------------------------------------------------------- regression: predictions of shape (rows, 1)


class Rmse(Metric):
    """Root mean squared error of the predictions, in the target's units (regression)."""

    name = "rmse"
    greater_is_better = False
    tasks = frozenset({"regression"})

    def compute(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        return float(np.sqrt(np.mean((np.asarray(proba, dtype=np.float64)[:, 0] - y_true) ** 2)))


class Mae(Metric):
    """Mean absolute error of the predictions, in the target's units (regression)."""

    name = "mae"
    greater_is_better = False
    tasks = frozenset({"regression"})

    def compute(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        return float(np.mean(np.abs(np.asarray(proba, dtype=np.float64)[:, 0] - y_true)))


class R2(Metric):
    """Coefficient of determination (scikit-learn's r2_score): 1 is perfect, 0 is predicting the valid mean."""

    name = "r2"
    tasks = frozenset({"regression"})

    def compute(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        from sklearn.metrics import r2_score

        return float(r2_score(y_true, np.asarray(proba, dtype=np.float64)[:, 0]))


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [Accuracy, F1Macro, LogLoss, ReconstructionMSE, BalancedAccuracy, PrecisionMacro, RecallMacro, RocAuc,
            Rmse, Mae, R2]
