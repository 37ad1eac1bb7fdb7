"""The split fingerprint and repeated splits (core/fingerprint.py, core/data/_repeats.py), without a flow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scribbles.core import ConfigError, Dataset, Fold, create
from scribbles.core.data import with_repeats
from scribbles.core.fingerprint import TAGS, assignment_hash, differences, split_fingerprint


def test_fingerprint_names_the_part_that_differs() -> None:
    """Same inputs: same tags; another data version, splitter or row assignment: a reason naming it."""
    folds = [Fold(0, [0, 1], [2, 3]), Fold(1, [2, 3], [0, 1])]
    split = {"name": "kfold", "n_splits": 2, "shuffle": True, "seed": 0}
    a = split_fingerprint("md5a", split, folds)
    assert a == split_fingerprint("md5a", dict(split), [Fold(0, [0, 1], [2, 3]), Fold(1, [2, 3], [0, 1])])
    assert differences(a, a) == []
    assert differences(a, split_fingerprint("md5b", split, folds)) == ["data versions differ (md5a vs md5b)"]
    other = split_fingerprint("md5a", {**split, "seed": 1}, folds)
    assert differences(a, other)[0].startswith("splitters differ")
    moved = split_fingerprint("md5a", split, [Fold(0, [0, 2], [1, 3]), Fold(1, [1, 3], [0, 2])])
    assert differences(a, moved) == ["the rows were assigned to folds differently"]
    assert "no split fingerprint" in differences({}, a)[0]
    # Given the runs' ids, the advice names the run to rerun (not a RUN_ID to fill in).
    assert differences(a, {}, ("run1", "run2")) == [
        "run run2 records no split fingerprint (it was made before scribbles recorded one); "
        "rerun it with `scribbles rerun run2`"]
    assert len(a[TAGS["fingerprint"]]) == 64
    # The hash sees fold boundaries, not just the concatenated positions.
    assert assignment_hash([Fold(0, [0], [1, 2])]) != assignment_hash([Fold(0, [0, 1], [2])])


def test_repeats_give_new_shuffles_numbered_across_and_refuse_fixed_splitters() -> None:
    """Repeat r is the splitter with seed + r; indices run 0..R*k-1; an unshuffled splitter is refused."""
    frame = pd.DataFrame({"x": np.arange(30.0), "y": np.arange(30) % 3, "g": np.arange(30) // 3})
    dataset = Dataset(frame, "y", ["x"], group="g")
    repeated = with_repeats(create("splitter", "kfold", n_splits=3, shuffle=True, seed=5), 3)
    folds = list(repeated.split(dataset))
    assert [f.index for f in folds] == list(range(9)) and repeated.get_n_splits(dataset) == 9
    assert repeated.name == "kfold"
    for r in range(3):
        alone = list(create("splitter", "kfold", n_splits=3, shuffle=True, seed=5 + r).split(dataset))
        assert all(np.array_equal(a.valid, b.valid) for a, b in zip(alone, folds[3 * r: 3 * r + 3], strict=True))
    assert not np.array_equal(folds[0].valid, folds[3].valid)
    with pytest.raises(ConfigError, match=r"split\.repeats: splitter 'group_kfold' gives the same folds"):
        with_repeats(create("splitter", "group_kfold", n_splits=3), 2)
    with pytest.raises(ConfigError, match=r"set split\.shuffle: true"):
        with_repeats(create("splitter", "kfold", n_splits=3), 2)
    with pytest.raises(ConfigError, match=r"split\.repeats: must be a whole number"):
        with_repeats(create("splitter", "kfold", n_splits=3, shuffle=True), 0)
    shuffled_groups = with_repeats(create("splitter", "group_kfold", n_splits=3, shuffle=True), 2)
    assert len(list(shuffled_groups.split(dataset))) == 6


def test_one_list_of_operational_fields_decides_both_the_fold_cache_and_the_checkpoint_key():
    """Checkpoint keys and fold-cache keys ignore exactly the same ``train`` fields (``OPERATIONAL_FIELDS``):
    changing one leaves both keys alone; changing a field that decides results changes both."""
    from scribbles.core.config import OPERATIONAL_FIELDS, TrainConfig
    from scribbles.core.training import run_key
    from scribbles.flows.fold_cache import keyed_params

    base = TrainConfig()
    params = {f"train.{k}": str(v) for k, v in base.model_dump(mode="json").items()}
    changed = {"timeout": 5.0, "restarts": 0, "checkpoint_dir": "elsewhere", "rdzv_endpoint": "h:1",
               "threads": 1, "parallel_folds": 2, "dask_address": "tcp://h:1"}
    assert {f"train.{k}" for k in changed} == {f for f in OPERATIONAL_FIELDS if f.startswith("train.")}
    for name, value in changed.items():
        other = base.model_copy(update={name: value})
        assert run_key(other, "single") == run_key(base, "single"), name
        assert keyed_params({**params, f"train.{name}": str(value)}) == keyed_params(params), name
    for name, value in {"lr": 0.5, "device": "cpu", "epochs": 2}.items():
        other = base.model_copy(update={name: value})
        assert run_key(other, "single") != run_key(base, "single"), name
        assert keyed_params({**params, f"train.{name}": str(value)}) != keyed_params(params), name
