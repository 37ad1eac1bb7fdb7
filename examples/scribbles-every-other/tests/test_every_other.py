"""The example plugin's own tests: scribbles' conformance kit plus what the techniques compute."""

from __future__ import annotations

import numpy as np
import pytest
from scribbles.testing import check_technique, synthetic_dataset
from scribbles_every_other.metrics import TopKAccuracy
from scribbles_every_other.splitters import EveryOther


@pytest.mark.parametrize("params", [None, {"n_splits": 3, "offset": 2}])
def test_every_other_conforms(params) -> None:
    """Folds pass the leakage guard, cover every row and repeat."""
    check_technique(EveryOther, params=params)


def test_top_k_conforms() -> None:
    """A perfect prediction scores at least as well as a random one, as a finite float."""
    check_technique(TopKAccuracy, params={"k": 2})


def test_every_other_alternates() -> None:
    """Row i validates in fold (i + offset) % n_splits."""
    folds = list(EveryOther(EveryOther.Params(offset=1)).split(synthetic_dataset(rows=6)))
    assert [f.valid.tolist() for f in folds] == [[1, 3, 5], [0, 2, 4]]


def test_top_k_counts_the_k_best() -> None:
    """Class 2 is second most probable in row 0 and third in row 1."""
    proba = np.array([[0.5, 0.1, 0.4], [0.5, 0.3, 0.2]])
    assert TopKAccuracy(TopKAccuracy.Params(k=2)).compute(np.array([2, 2]), proba) == 0.5
