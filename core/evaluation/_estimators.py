"""A scikit-learn style estimator behind the ``torch.nn.Module`` interface the evaluator uses.

Classic models (k-NN, SVM, trees, Gaussian mixtures) build an ``EstimatorModule``; the ``sklearn``
strategy calls its ``fit`` once on the flattened training rows, and ``forward`` returns
log-probabilities, so the evaluator's softmax gives back the estimator's probabilities and TTA,
metrics and losses work unchanged. Nothing here imports scikit-learn: the estimator is duck-typed.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch
from torch import nn

#: Probability given to a class the estimator never saw in training (log(0) would poison merges).
FLOOR = 1e-12

#: One estimator call at a time in this process. scikit-learn caps BLAS at one thread inside its OpenMP
#: loops with threadpoolctl, a process-wide setting: a second thread leaving its own cap (the tracker's
#: logging thread predicting an input example for the model's signature) lifted the first one's, and
#: OpenBLAS, called from inside an OpenMP loop, printed "this application may hang" a dozen times.
ESTIMATOR_CALLS = threading.RLock()


class EstimatorModule(nn.Module):
    """Wraps an estimator with ``fit(X, y)`` and ``predict_proba(X)`` (or ``decision_function``)."""

    def __init__(self, estimator: Any, n_classes: int, regression: bool = False) -> None:
        super().__init__()
        self.estimator = estimator
        self.n_classes = n_classes
        #: A regressor: ``forward`` gives its predictions, (rows, 1), not log-probabilities.
        self.regression = regression
        # The evaluator finds the device through the parameters; this one holds nothing.
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    def fit(self, x: np.ndarray, y: np.ndarray) -> EstimatorModule:
        """Fit the estimator on rows ``x`` (flattened) and class positions ``y``."""
        with ESTIMATOR_CALLS:
            self.estimator.fit(x.reshape(len(x), -1), y)
        return self

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (rows, n_classes); classes absent from training get probability 0."""
        with ESTIMATOR_CALLS:
            proba = self.estimator.predict_proba(x.reshape(len(x), -1))
        full = np.zeros((len(x), self.n_classes), dtype=np.float64)
        full[:, np.asarray(self.estimator.classes_, dtype=np.int64)] = proba
        return full

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The most probable class position of each row."""
        return self.scores(x).argmax(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.regression:
            rows = x.detach().cpu().float().numpy()
            with ESTIMATOR_CALLS:
                predicted = np.asarray(self.estimator.predict(rows.reshape(len(rows), -1)), dtype=np.float32)
            return torch.from_numpy(predicted.reshape(len(rows), 1)).to(x.device)
        proba = self.scores(x.detach().cpu().float().numpy())
        logp = np.log(np.clip(proba, FLOOR, None))
        return torch.from_numpy(logp).float().to(x.device)
