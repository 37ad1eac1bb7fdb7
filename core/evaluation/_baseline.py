"""The baseline every fold is scored against: what a model that ignores the features gets.

scikit-learn's dummy estimators, fitted on the fold's train targets only: ``DummyClassifier(strategy="prior")``
predicts the train class frequencies as probabilities (its most probable class is the majority class, so
its accuracy is the majority-class accuracy and its log loss the entropy of the priors);
``DummyRegressor(strategy="mean")`` predicts the train mean. A model that does not beat this has learned
nothing from the features.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import metric_names as naming
from ..contracts import Metric

#: What the baseline is, in words, for tables and warnings.
DESCRIPTION = {"classification": "class priors of the train rows (majority class)",
               "regression": "mean of the train targets"}


def baseline_predictions(task: str, y_train: np.ndarray, n_valid: int, n_classes: int) -> np.ndarray:
    """The dummy estimator's output for ``n_valid`` rows: probabilities (rows, n_classes) for classification
    (classes are positions 0..n_classes-1; one absent from the train rows gets 0), predictions (rows, 1) for
    regression."""
    placeholder = np.zeros((len(y_train), 1))
    if task == "regression":
        from sklearn.dummy import DummyRegressor

        model = DummyRegressor(strategy="mean").fit(placeholder, y_train)
        return model.predict(np.zeros((n_valid, 1))).reshape(n_valid, 1).astype(np.float32)
    from sklearn.dummy import DummyClassifier

    model = DummyClassifier(strategy="prior").fit(placeholder, y_train)
    proba = np.zeros((n_valid, n_classes), dtype=np.float32)
    proba[:, np.asarray(model.classes_, dtype=np.int64)] = model.predict_proba(np.zeros((n_valid, 1)))
    return proba


def baseline_metrics(metrics: Sequence[Metric], task: str, y_train: np.ndarray, y_valid: np.ndarray,
                     n_classes: int) -> dict[str, float]:
    """``{m}_baseline`` for every metric scored on predictions (not on a model output such as a reconstruction)."""
    predictions = baseline_predictions(task, y_train, len(y_valid), n_classes)
    return {naming.baseline(m.name): float(m.compute(y_valid, predictions)) for m in metrics if m.needs == "proba"}
