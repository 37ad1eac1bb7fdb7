"""Paired fold statistics (core/evaluation/_stats.py) against scikit-learn's published example and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from scribbles.core.evaluation import bayesian_correlated, compare_paired, corrected_ttest, not_worse


@pytest.fixture(scope="module")
def grid_search_scores() -> tuple[np.ndarray, np.ndarray, int, int]:
    """scikit-learn's example "Statistical comparison of models using grid search", re-run as published.

    Moons (noise 0.352, 100 samples, random_state 1), SVC kernels scored by ROC AUC on
    RepeatedStratifiedKFold(10 splits, 10 repeats, random_state 0): the scores of its best (rbf) and
    second-best (linear) models on the same 100 folds, and the fold sizes (90 train, 10 test).
    """
    import pandas as pd
    from sklearn.datasets import make_moons
    from sklearn.model_selection import GridSearchCV, RepeatedStratifiedKFold
    from sklearn.svm import SVC

    x, y = make_moons(noise=0.352, random_state=1, n_samples=100)
    grid = [{"kernel": ["linear"]}, {"kernel": ["poly"], "degree": [2, 3]}, {"kernel": ["rbf"]}]
    cv = RepeatedStratifiedKFold(n_splits=10, n_repeats=10, random_state=0)
    search = GridSearchCV(SVC(random_state=0), grid, scoring="roc_auc", cv=cv).fit(x, y)
    results = pd.DataFrame(search.cv_results_).sort_values(by=["rank_test_score"])
    scores = results.filter(like="split").to_numpy()
    assert list(results["param_kernel"][:2]) == ["rbf", "linear"]
    train, test = next(iter(cv.split(x, y)))
    return scores[0], scores[1], len(train), len(test)


def test_corrected_ttest_equals_scikit_learns_published_example(grid_search_scores) -> None:
    """The example's printed figures, to their precision: corrected t 0.750, p 0.227; uncorrected t 2.611,
    p 0.005; P(rbf better) 0.773; P(equivalent, ROPE [-0.01, 0.01]) 0.432; 95% interval [-0.016, 0.036].

    The example's p-values are right-tailed (``t.sf(abs(t), df)``): half of our two-sided ones.
    """
    rbf, linear, n_train, n_test = grid_search_scores
    diffs = rbf - linear
    t, p, low, high = corrected_ttest(diffs, n_train, n_test)
    assert (round(t, 3), round(p / 2, 3)) == (0.750, 0.227)
    result = compare_paired("roc_auc", rbf, linear, n_train, n_test, rope=0.01)
    assert (round(result.naive_t, 3), round(result.naive_p / 2, 3)) == (2.611, 0.005)
    assert (round(low, 3), round(high, 3)) == (-0.016, 0.036)
    better, _, _ = bayesian_correlated(diffs, n_train, n_test, rope=0.0)
    assert round(better, 3) == 0.773
    assert round(result.p_equivalent, 3) == 0.432
    # The example's own formulas (its corrected_std and compute_corrected_ttest), written out:
    n = len(diffs)
    std = np.sqrt(np.var(diffs, ddof=1) * (1 / n + n_test / n_train))
    assert t == pytest.approx(np.mean(diffs) / std, rel=1e-12)
    posterior = sps.t(n - 1, loc=np.mean(diffs), scale=std)
    assert (low, high) == pytest.approx(posterior.interval(0.95), rel=1e-12)
    assert result.p_better == pytest.approx(1 - posterior.cdf(0.01), abs=1e-12)
    assert result.p_better + result.p_equivalent + result.p_worse == pytest.approx(1.0)
    # Not significant corrected, "significant" naive: the overconfidence the correction removes.
    assert p > 0.05 > result.naive_p


def test_naive_and_wilcoxon_are_scipys() -> None:
    """The naive t-test is scipy's ttest_rel, the Wilcoxon p scipy's wilcoxon; the corrected p is larger."""
    rng = np.random.default_rng(0)
    a = 0.8 + rng.normal(0, 0.02, 10)
    b = a - 0.01 + rng.normal(0, 0.01, 10)
    r = compare_paired("accuracy", a, b, n_train=900, n_test=100)
    rel = sps.ttest_rel(a, b)
    assert (r.naive_t, r.naive_p) == pytest.approx((rel.statistic, rel.pvalue))
    assert r.wilcoxon_p == pytest.approx(sps.wilcoxon(a - b).pvalue)
    assert r.p > r.naive_p  # the correction widens the variance: (1/10 + 1/9) > 1/10
    assert r.low < r.mean_diff < r.high


def test_direction_of_a_loss_swaps_better_and_worse() -> None:
    """For a lower-is-better metric, A with lower values is the better one."""
    a, b = np.array([0.1, 0.2, 0.15, 0.12, 0.11]), np.array([0.3, 0.35, 0.33, 0.31, 0.36])
    loss = compare_paired("log_loss", a, b, 80, 20, greater_is_better=False)
    assert loss.p_better > 0.95 > loss.p_worse
    gain = compare_paired("accuracy", a, b, 80, 20, greater_is_better=True)
    assert gain.p_worse > 0.95 > gain.p_better


def test_identical_scores_are_equivalent_and_never_significant() -> None:
    """Zero differences: p = 1, no Wilcoxon p, all posterior mass in the ROPE, not worse than the best."""
    a = np.array([0.7, 0.8, 0.75])
    r = compare_paired("accuracy", a, a.copy(), 100, 50, rope=0.01)
    assert (r.t, r.p, r.wilcoxon_p, r.p_equivalent) == (0.0, 1.0, None, 1.0)
    assert not_worse(a, a, 100, 50, greater_is_better=True)


def test_not_worse_marks_a_clear_loser() -> None:
    """A trial worse on every fold by far more than the noise is significantly worse than the best."""
    best = np.array([0.90, 0.91, 0.92, 0.90, 0.93])
    assert not not_worse(best, best - 0.2, 400, 100, greater_is_better=True)
    assert not_worse(best, best - np.array([0.01, -0.01, 0.0, 0.01, -0.005]), 400, 100, greater_is_better=True)


def test_the_metric_name_scheme_finds_configured_metrics_among_a_parent_runs_names():
    """``base_metrics`` keeps a metric with a ``_mean`` and a TTA twin; breakdowns and lone means are not bases."""
    from scribbles.core import metric_names as names

    logged = [names.mean(n) for n in ("accuracy", names.tta("accuracy"), names.tta_gain("accuracy"),
                                      names.tta("accuracy", "hflip"), "log_loss", names.baseline("accuracy"))]
    assert logged[:3] == ["accuracy_mean", "accuracy_tta_mean", "accuracy_tta_gain_mean"]
    assert names.base_metrics(logged) == ["accuracy"]


def test_a_group_of_one_class_has_no_roc_auc_and_no_warning() -> None:
    """Per-group scores where one group's valid rows hold one class (a subject doing one activity): its ROC
    AUC is undefined and left out of the worst group (it printed `nan ± nan`), and scikit-learn's per-group
    warnings do not reach the user."""
    import warnings

    from scribbles.core import default_registry
    from scribbles.core.evaluation import by_group

    registry = default_registry()
    metrics = [registry.create("metric", name) for name in ("roc_auc", "balanced_accuracy")]
    y_true = np.array([0, 1, 0, 1, 1, 1, 1])
    proba = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3], [0.1, 0.9]])
    groups = np.array(["a", "a", "a", "a", "b", "b", "b"])  # group b: class 1 only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table, worst = by_group(metrics, y_true, proba, groups)
    assert np.isnan(table.set_index("group").loc["b", "roc_auc"])
    assert worst["roc_auc_worst_group"] == pytest.approx(1.0)  # group a's, the only one defined
    assert worst["balanced_accuracy_worst_group"] == pytest.approx(table["balanced_accuracy"].min())
