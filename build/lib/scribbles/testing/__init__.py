"""scribbles.testing: the conformance kit that a plugin's own tests call.

``check_technique(cls)`` builds a technique and runs its family's contract on tiny synthetic data,
like scikit-learn's ``check_estimator``: a splitter's folds pass the leakage guard and cover the rows;
a model gives one score per class per row; a TTA transform keeps shapes and inverts where it says it
does; and so on. ``technique_problems(cls)`` returns the findings instead of raising.
"""

from __future__ import annotations

from .kit import TechniqueCheckError, check_technique, technique_problems
from .synthetic import SHAPES, synthetic_dataset, synthetic_frame

__all__ = [
    "SHAPES",
    "TechniqueCheckError",
    "check_technique",
    "synthetic_dataset",
    "synthetic_frame",
    "technique_problems",
]
