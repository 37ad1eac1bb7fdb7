"""Classic models on the ``sklearn`` strategy: ``knn``, ``svm``, ``decision_tree``, ``gaussian_mixture``.

Each builds an ``EstimatorModule`` around a scikit-learn estimator, fitted once on the flattened rows.
scikit-learn is imported inside ``build``: the registry loads where only torch is installed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scribbles.core import Model, ModelSpec, Seed, Technique, hookimpl
from scribbles.core.evaluation import EstimatorModule


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Classic(Model):
    """Base of the classic models: trained by the ``sklearn`` strategy only."""

    default_strategy: ClassVar[str] = "sklearn"
    strategies: ClassVar[frozenset[str]] = frozenset({"sklearn"})


# ---------------------------------------------------------------- k-NN


def default_k(n_rows: int) -> int:
    """k = round(ln N), the notes' rule of thumb for N training rows (at least 1)."""
    return max(1, round(math.log(max(n_rows, 1))))


class KnnModule(EstimatorModule):
    """A k-NN estimator whose k, when not given, is round(ln N) of the rows it is fitted on."""

    def __init__(self, estimator: Any, n_classes: int, k: int | None, regression: bool = False) -> None:
        super().__init__(estimator, n_classes, regression)
        self.k = k

    def fit(self, x: np.ndarray, y: np.ndarray) -> KnnModule:
        self.estimator.set_params(n_neighbors=min(self.k or default_k(len(x)), len(x)))
        super().fit(x, y)
        return self


class Knn(_Classic):
    """k-nearest neighbours; k defaults to round(ln N) of the training rows."""

    name = "knn"

    class Params(_Params):
        k: int | None = Field(None, ge=1, description="neighbours; default round(ln N)")
        metric: Literal["euclidean", "manhattan", "chebyshev", "cosine", "minkowski"] = "euclidean"
        weights: Literal["uniform", "distance"] = "uniform"

    def build(self, spec: ModelSpec) -> KnnModule:
        from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

        p = self.params
        if spec.task == "regression":
            return KnnModule(KNeighborsRegressor(metric=p.metric, weights=p.weights), 1, p.k, regression=True)
        return KnnModule(KNeighborsClassifier(metric=p.metric, weights=p.weights), spec.n_classes, p.k)


# ---------------------------------------------------------------- SVM


class SvmModule(EstimatorModule):
    """An SVC whose class scores are a softmax of its one-vs-rest decision values.

    With ``break_ties=True`` the SVC predicts the argmax of those values, so the scores rank classes
    exactly as ``SVC.predict`` does; Platt-scaled ``predict_proba`` (``probability: true``) does not.
    """

    def scores(self, x: np.ndarray) -> np.ndarray:
        if not hasattr(self.estimator, "decision_function"):  # Platt-scaled: a calibrated classifier
            return super().scores(x)
        values = self.estimator.decision_function(x.reshape(len(x), -1))
        if values.ndim == 1:  # two classes: one signed margin
            values = np.stack([-values, values], axis=1)
        values = values - values.max(1, keepdims=True)
        proba = np.exp(values) / np.exp(values).sum(1, keepdims=True)
        full = np.zeros((len(x), self.n_classes), dtype=np.float64)
        full[:, np.asarray(self.estimator.classes_, dtype=np.int64)] = proba
        return full


class Svm(_Classic):
    """A support vector machine (kernel rbf, linear or poly; C trades margin for training errors)."""

    name = "svm"

    class Params(_Params):
        kernel: Literal["rbf", "linear", "poly"] = "rbf"
        C: float = Field(1.0, gt=0)
        gamma: Literal["scale", "auto"] | float = "scale"
        degree: int = Field(3, ge=1, description="poly kernel only")
        probability: bool = Field(False, description="Platt-scaled probabilities (slower, seeded)")
        class_weight: Literal["balanced"] | None = Field(None, description="weigh classes by inverse frequency")
        seed: Seed = 0

    def build(self, spec: ModelSpec) -> EstimatorModule:
        from sklearn.svm import SVC, SVR

        p = self.params
        if spec.task == "regression":
            return EstimatorModule(SVR(kernel=p.kernel, C=p.C, gamma=p.gamma, degree=p.degree), 1, regression=True)
        svc = SVC(kernel=p.kernel, C=p.C, gamma=p.gamma, degree=p.degree, class_weight=p.class_weight,
                  break_ties=True, random_state=p.seed)
        if p.probability:
            # Platt scaling as scikit-learn 1.9 advises in place of SVC(probability=True), deprecated there.
            from sklearn.calibration import CalibratedClassifierCV

            return SvmModule(CalibratedClassifierCV(svc, method="sigmoid", ensemble=False), spec.n_classes)
        return SvmModule(svc, spec.n_classes)


# ---------------------------------------------------------------- decision tree


class DecisionTree(_Classic):
    """A decision tree grown greedily by impurity decrease (entropy by default)."""

    name = "decision_tree"

    class Params(_Params):
        criterion: Literal["entropy", "gini", "log_loss"] = "entropy"
        max_depth: int | None = Field(None, ge=1)
        min_samples_leaf: int = Field(1, ge=1)
        class_weight: Literal["balanced"] | None = Field(None, description="weigh classes by inverse frequency")
        seed: Seed = 0

    def build(self, spec: ModelSpec) -> EstimatorModule:
        from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

        p = self.params
        if spec.task == "regression":  # the criterion is the squared error: the classification ones do not apply
            tree = DecisionTreeRegressor(max_depth=p.max_depth, min_samples_leaf=p.min_samples_leaf,
                                         random_state=p.seed)
            return EstimatorModule(tree, 1, regression=True)
        tree = DecisionTreeClassifier(criterion=p.criterion, max_depth=p.max_depth, class_weight=p.class_weight,
                                      min_samples_leaf=p.min_samples_leaf, random_state=p.seed)
        return EstimatorModule(tree, spec.n_classes)


# ---------------------------------------------------------------- Gaussian mixture


class MixtureClassifier:
    """A generative classifier: one Gaussian mixture per class (fitted by EM) and the class priors.

    ``predict_proba`` is Bayes' rule: p(c | x) is proportional to p(c) p(x | c).
    """

    def __init__(self, components: int, covariance: str, max_iter: int, reg_covar: float, seed: int) -> None:
        self.components, self.covariance = components, covariance
        self.max_iter, self.reg_covar, self.seed = max_iter, reg_covar, seed
        self.mixtures: list[Any] = []

    def fit(self, x: np.ndarray, y: np.ndarray) -> MixtureClassifier:
        from sklearn.mixture import GaussianMixture

        x = np.asarray(x, dtype=np.float64)  # float32 covariances lose EM's monotone lower bound
        self.classes_ = np.unique(y)
        self.log_prior_ = np.log(np.array([np.mean(y == c) for c in self.classes_]))
        self.mixtures = []
        for c in self.classes_:
            rows = x[y == c]
            mixture = GaussianMixture(
                n_components=min(self.components, len(rows)), covariance_type=self.covariance,
                max_iter=self.max_iter, reg_covar=self.reg_covar, random_state=self.seed,
            )
            self.mixtures.append(mixture.fit(rows))
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        joint = np.stack([m.score_samples(x) for m in self.mixtures], axis=1) + self.log_prior_
        joint -= joint.max(1, keepdims=True)
        proba = np.exp(joint)
        return proba / proba.sum(1, keepdims=True)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(x).argmax(1)]


class GaussianMixture(_Classic):
    """A generative classifier with one Gaussian mixture per class, fitted by EM."""

    name = "gaussian_mixture"
    tasks = frozenset({"classification"})

    class Params(_Params):
        components: int = Field(2, ge=1, description="mixture components per class")
        covariance: Literal["full", "tied", "diag", "spherical"] = "diag"
        max_iter: int = Field(100, ge=1)
        reg_covar: float = Field(1e-3, gt=0, description="added to covariance diagonals for stability")
        seed: Seed = 0

    def build(self, spec: ModelSpec) -> EstimatorModule:
        p = self.params
        mixture = MixtureClassifier(p.components, p.covariance, p.max_iter, p.reg_covar, p.seed)
        return EstimatorModule(mixture, spec.n_classes)


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [Knn, Svm, DecisionTree, GaussianMixture]
