"""Paired statistics of two models scored on the same cross-validation folds.

Fold scores of two models are paired samples whose training sets overlap, so they are correlated and
the naive paired t-test is overconfident (Dietterich, 1998). This module gives the tests that account
for it, on the per-fold differences ``d = a - b``:

- the corrected resampled t-test of Nadeau and Bengio (2003), "Inference for the Generalization Error",
  Machine Learning 52(3): the variance of the mean difference is ``(1/n + n_test/n_train) * s^2``
  instead of ``s^2 / n``. For repeated cross-validation (R repeats of k folds) ``n = R * k`` differences
  enter the same formula (Bouckaert and Frank, 2004, "Evaluating the replicability of significance
  tests for comparing learning algorithms", PAKDD), as scikit-learn's example "Statistical comparison of
  models using grid search" computes it;
- the Bayesian correlated t-test of Benavoli, Corani, Demsar and Zaffalon (2017), "Time for a change: a
  tutorial for comparing multiple classifiers through Bayesian analysis", JMLR 18(77): the posterior of
  the mean difference is a Student t with ``n - 1`` degrees of freedom, location ``mean(d)`` and the
  same corrected scale; probabilities of "better", "equivalent" (inside a region of practical
  equivalence, the ROPE) and "worse" are its masses;
- the Wilcoxon signed-rank test (scipy.stats.wilcoxon), which makes no normality assumption but
  ignores the correlation.

Pure numpy and scipy (scipy imported inside the functions: core stays light to import).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Paired:
    """The paired comparison of A against B on one metric (``diff`` = A - B, fold by fold)."""

    metric: str
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    #: Nadeau-Bengio corrected t statistic, its two-sided p-value and 95% interval of the mean difference.
    t: float
    p: float
    low: float
    high: float
    #: The naive paired t-test (scipy.stats.ttest_rel), for contrast: overconfident on CV folds.
    naive_t: float
    naive_p: float
    #: Wilcoxon signed-rank two-sided p-value; None when every difference is zero.
    wilcoxon_p: float | None
    #: Bayesian correlated t-test: P(A better), P(practically equivalent), P(A worse).
    p_better: float
    p_equivalent: float
    p_worse: float
    rope: float
    greater_is_better: bool

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return asdict(self)


def correction(n: int, n_train: float, n_test: float) -> float:
    """Nadeau and Bengio's variance factor ``1/n + n_test/n_train`` (n differences, mean fold sizes)."""
    if n < 2:
        raise ValueError(f"a paired test needs at least 2 folds, got {n}")
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"fold sizes must be positive (train {n_train}, test {n_test})")
    return 1.0 / n + n_test / n_train


def corrected_std(diffs: np.ndarray, n_train: float, n_test: float) -> float:
    """The corrected standard deviation of the mean difference, ``sqrt((1/n + n_test/n_train) * s^2)``.

    ``s^2`` is the sample variance (``ddof=1``) of the ``n`` differences (Nadeau and Bengio, 2003).
    """
    diffs = np.asarray(diffs, dtype=np.float64)
    return math.sqrt(correction(len(diffs), n_train, n_test) * float(np.var(diffs, ddof=1)))


def corrected_ttest(diffs: np.ndarray, n_train: float, n_test: float,
                    level: float = 0.95) -> tuple[float, float, float, float]:
    """Nadeau-Bengio corrected resampled t-test: (t, two-sided p, low, high) of the mean difference.

    ``t = mean(d) / corrected_std`` on ``n - 1`` degrees of freedom; the interval is the ``level``
    confidence interval ``mean(d) +- t_{n-1} quantile * corrected_std``. With no spread at all, t is
    0 (p = 1) for a zero mean and infinite (p = 0) otherwise.
    """
    from scipy import stats

    diffs = np.asarray(diffs, dtype=np.float64)
    mean, std, df = float(diffs.mean()), corrected_std(diffs, n_train, n_test), len(diffs) - 1
    if std == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
        return t, 1.0 if mean == 0.0 else 0.0, mean, mean
    t = mean / std
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * std
    return float(t), p, mean - half, mean + half


def bayesian_correlated(diffs: np.ndarray, n_train: float, n_test: float,
                        rope: float) -> tuple[float, float, float]:
    """Benavoli et al. (2017) correlated t-test: P(mean diff > rope), P(|mean diff| <= rope), P(< -rope).

    The posterior of the mean difference is Student t(df = n - 1, loc = mean(d), scale = corrected_std)
    (their eq. with correlation rho = n_test / (n_train + n_test), so rho / (1 - rho) = n_test / n_train).
    """
    from scipy import stats

    diffs = np.asarray(diffs, dtype=np.float64)
    mean, std = float(diffs.mean()), corrected_std(diffs, n_train, n_test)
    if std == 0.0:
        above, below = float(mean > rope), float(mean < -rope)
        return above, 1.0 - above - below, below
    posterior = stats.t(len(diffs) - 1, loc=mean, scale=std)
    above, below = float(posterior.sf(rope)), float(posterior.cdf(-rope))
    return above, max(0.0, 1.0 - above - below), below


def wilcoxon_p(diffs: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value (scipy.stats.wilcoxon); None when every difference is 0."""
    from scipy import stats

    diffs = np.asarray(diffs, dtype=np.float64)
    if not np.any(diffs != 0):
        return None
    return float(stats.wilcoxon(diffs).pvalue)


def naive_ttest(diffs: np.ndarray) -> tuple[float, float]:
    """The uncorrected paired t-test (scipy.stats.ttest_1samp on the differences): (t, p)."""
    from scipy import stats

    diffs = np.asarray(diffs, dtype=np.float64)
    if float(np.std(diffs)) == 0.0:
        mean = float(diffs.mean())
        return (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    result = stats.ttest_1samp(diffs, 0.0)
    return float(result.statistic), float(result.pvalue)


def compare_paired(metric: str, a: np.ndarray, b: np.ndarray, n_train: float, n_test: float,
                   rope: float = 0.0, greater_is_better: bool = True) -> Paired:
    """Every statistic of A against B on one metric; ``a[i]`` and ``b[i]`` are the same fold's scores.

    ``n_train``, ``n_test``: mean train and valid rows per fold. "Better" follows the metric's
    direction: for a loss, A is better when its value is lower.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must be two 1-d arrays of one length, got {a.shape} and {b.shape}")
    diffs = a - b
    t, p, low, high = corrected_ttest(diffs, n_train, n_test)
    naive_t, naive_p = naive_ttest(diffs)
    above, equal, below = bayesian_correlated(diffs, n_train, n_test, rope)
    better, worse = (above, below) if greater_is_better else (below, above)
    return Paired(
        metric=metric, n=len(diffs), mean_a=float(a.mean()), mean_b=float(b.mean()), mean_diff=float(diffs.mean()),
        t=t, p=p, low=low, high=high, naive_t=naive_t, naive_p=naive_p, wilcoxon_p=wilcoxon_p(diffs),
        p_better=better, p_equivalent=equal, p_worse=worse, rope=rope, greater_is_better=greater_is_better,
    )


def not_worse(best: np.ndarray, other: np.ndarray, n_train: float, n_test: float, greater_is_better: bool,
              alpha: float = 0.05) -> bool:
    """True when ``other`` is not significantly worse than ``best`` (one-sided corrected t-test at ``alpha``).

    Used to mark the sweep trials that are statistically tied with the best one.
    """
    from scipy import stats

    diffs = np.asarray(best, dtype=np.float64) - np.asarray(other, dtype=np.float64)
    if not greater_is_better:
        diffs = -diffs  # positive: best is better
    if not np.all(np.isfinite(diffs)):
        return False
    std = corrected_std(diffs, n_train, n_test)
    mean = float(diffs.mean())
    if std == 0.0:
        return mean <= 0.0
    p_one_sided = float(stats.t.sf(mean / std, len(diffs) - 1))
    return p_one_sided >= alpha
