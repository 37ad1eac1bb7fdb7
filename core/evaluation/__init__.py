"""Evaluation: class probabilities with and without test-time augmentation (TTA), baselines, groups, statistics.

``evaluate`` / ``tta_metrics`` / ``tta_groups`` score a fold; ``baseline_metrics`` what a model that ignores the
features gets; ``by_group`` per-group results; ``compare_paired`` / ``corrected_ttest`` paired statistics of two
models on the same folds; ``output_of`` / ``logits_of`` read a forward pass; ``Compose`` the ``compose`` TTA
technique; ``Standardised`` / ``Ensemble`` served models; ``EstimatorModule`` a scikit-learn estimator behind
the module interface. Implementation modules (``_evaluation.py``, ...) are private; names are imported on
first use (PEP 562), so importing this package imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._baseline import DESCRIPTION, baseline_metrics, baseline_predictions
    from ._compose import Compose, compose_views
    from ._estimators import EstimatorModule
    from ._evaluation import (
        IDENTITY,
        PROBE_MIN_BLOCKS,
        TTAResult,
        clear_mode_cache,
        collect_output,
        evaluate,
        evaluate_groups,
        gain,
        merge_probabilities,
        predict_views,
        transform_labels,
        tta_groups,
        tta_metrics,
    )
    from ._groups import by_group, write_groups
    from ._outputs import LOGITS, logits_of, output_of
    from ._serving import Ensemble, Standardised
    from ._stats import Paired, bayesian_correlated, compare_paired, corrected_ttest, not_worse

#: Name -> the private module that defines it.
_EXPORTS: dict[str, str] = {
    "Compose": "_compose",
    "DESCRIPTION": "_baseline",
    "Ensemble": "_serving",
    "EstimatorModule": "_estimators",
    "IDENTITY": "_evaluation",
    "LOGITS": "_outputs",
    "PROBE_MIN_BLOCKS": "_evaluation",
    "Paired": "_stats",
    "Standardised": "_serving",
    "TTAResult": "_evaluation",
    "baseline_metrics": "_baseline",
    "baseline_predictions": "_baseline",
    "bayesian_correlated": "_stats",
    "by_group": "_groups",
    "clear_mode_cache": "_evaluation",
    "collect_output": "_evaluation",
    "compare_paired": "_stats",
    "compose_views": "_compose",
    "corrected_ttest": "_stats",
    "evaluate": "_evaluation",
    "evaluate_groups": "_evaluation",
    "gain": "_evaluation",
    "logits_of": "_outputs",
    "merge_probabilities": "_evaluation",
    "not_worse": "_stats",
    "output_of": "_outputs",
    "predict_views": "_evaluation",
    "transform_labels": "_evaluation",
    "tta_groups": "_evaluation",
    "tta_metrics": "_evaluation",
    "write_groups": "_groups",
}
#: Name -> a private module exported whole, as a namespace of functions.
_NAMESPACES: dict[str, str] = {}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _NAMESPACES)

__all__ = [
    "DESCRIPTION",
    "IDENTITY",
    "LOGITS",
    "PROBE_MIN_BLOCKS",
    "Compose",
    "Ensemble",
    "EstimatorModule",
    "Paired",
    "Standardised",
    "TTAResult",
    "baseline_metrics",
    "baseline_predictions",
    "bayesian_correlated",
    "by_group",
    "clear_mode_cache",
    "collect_output",
    "compare_paired",
    "compose_views",
    "corrected_ttest",
    "evaluate",
    "evaluate_groups",
    "gain",
    "logits_of",
    "merge_probabilities",
    "not_worse",
    "output_of",
    "predict_views",
    "transform_labels",
    "tta_groups",
    "tta_metrics",
    "write_groups",
]
