"""The built-in techniques against their contracts and their scikit-learn references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scribbles.core import BadInput, Dataset, Fold, LeakageError, ModelSpec, TrainConfig, create
from scribbles.core.data import check_fold
from scribbles.core.evaluation import evaluate, merge_probabilities
from scribbles.core.training import train_single
from sklearn.model_selection import GroupKFold, KFold, TimeSeriesSplit, cross_val_score
from sklearn.neighbors import KNeighborsClassifier


def frame(n: int = 40, groups: int = 8, seed: int = 0) -> Dataset:
    rng = np.random.RandomState(seed)
    data = pd.DataFrame({
        "y": rng.randint(0, 3, n),
        "g": rng.randint(0, groups, n),
        "t": pd.date_range("2026-01-01", periods=n, freq="h").astype(str),
        "a": rng.randn(n),
        "b": rng.randn(n),
    })
    return Dataset(frame=data, target="y", features=["a", "b"], group="g", time="t")


def folds_of(name: str, dataset: Dataset, **params: object) -> list[Fold]:
    splitter = create("splitter", name, **params)
    folds = list(splitter.split(dataset))
    for fold in folds:
        check_fold(dataset, fold, splitter)
    return folds


def test_fold_positions_are_sorted_int64() -> None:
    """Fold holds sorted int64 positions whatever it is given."""
    fold = Fold(0, [3, 1, 2], np.array([9, 7], dtype=np.int32))
    assert fold.train.dtype == np.int64 and list(fold.train) == [1, 2, 3]
    assert list(fold.valid) == [7, 9]


@pytest.mark.parametrize("shuffle", [False, True])
def test_kfold_matches_sklearn(shuffle: bool) -> None:
    """kfold gives scikit-learn's KFold folds (same sizes; same rows without shuffle)."""
    dataset = frame(43)
    ours = folds_of("kfold", dataset, n_splits=5, shuffle=shuffle, seed=3)
    theirs = list(KFold(5).split(np.zeros(43)))
    assert [len(f.valid) for f in ours] == [len(v) for _, v in theirs]
    covered = np.sort(np.concatenate([f.valid for f in ours]))
    assert list(covered) == list(range(43))
    if not shuffle:
        for fold, (train, valid) in zip(ours, theirs, strict=True):
            assert list(fold.train) == list(train) and list(fold.valid) == list(valid)


def test_group_kfold_keeps_groups_apart_and_balances() -> None:
    """No group on both sides, and the same fold sizes as scikit-learn's GroupKFold."""
    dataset = frame(200, groups=17)
    ours = folds_of("group_kfold", dataset, n_splits=4)
    groups = dataset.frame["g"].to_numpy()
    theirs = list(GroupKFold(4).split(np.zeros(200), groups=groups))
    assert sorted(len(f.valid) for f in ours) == sorted(len(v) for _, v in theirs)
    for fold in ours:
        assert not set(groups[fold.train]) & set(groups[fold.valid])


@pytest.mark.parametrize(("gap", "test_size", "max_train_size"), [(0, None, None), (2, 5, None), (1, 4, 10)])
def test_time_series_without_time_column_is_sklearn(gap: int, test_size: int | None,
                                                    max_train_size: int | None) -> None:
    """Without a time column, time_series gives exactly TimeSeriesSplit's folds."""
    dataset = frame(50)
    dataset.time = None
    ours = folds_of("time_series", dataset, n_splits=4, gap=gap, test_size=test_size,
                    max_train_size=max_train_size)
    theirs = TimeSeriesSplit(4, gap=gap, test_size=test_size, max_train_size=max_train_size).split(np.zeros(50))
    for fold, (train, valid) in zip(ours, theirs, strict=True):
        assert list(fold.train) == list(train) and list(fold.valid) == list(valid)


def test_time_series_never_splits_a_timestamp() -> None:
    """With a time column, rows sharing a timestamp stay on one side and train precedes valid."""
    dataset = frame(60)
    dataset.frame["t"] = pd.Series(pd.date_range("2026-01-01", periods=20, freq="D").repeat(3)).sample(
        frac=1.0, random_state=0).astype(str).to_numpy()
    for fold in folds_of("time_series", dataset, n_splits=3, gap="2D"):
        times = pd.to_datetime(dataset.frame["t"])
        assert times.iloc[fold.train].max() + pd.Timedelta("2D") < times.iloc[fold.valid].min()


def test_splitter_bad_input_is_explained() -> None:
    """More folds than groups, or a gap that leaves no training data, are BadInput."""
    with pytest.raises(BadInput, match="asks for 9 folds but the data has 4 groups"):
        folds_of("group_kfold", frame(40, groups=4), n_splits=9)
    with pytest.raises(BadInput, match="leaves no training data"):
        folds_of("time_series", frame(20), n_splits=4, gap=15)


def test_leakage_guard_names_what_leaked() -> None:
    """The guard stops rows or groups on both sides and train times after valid times."""
    dataset = frame(30, groups=5)
    groups = dataset.frame["g"].to_numpy()
    group_splitter = create("splitter", "group_kfold")
    with pytest.raises(LeakageError, match="rows on both sides"):
        check_fold(dataset, Fold(0, [0, 1, 2], [2, 3]), group_splitter)
    same = np.flatnonzero(groups == groups[0])
    other = np.flatnonzero(groups != groups[0])
    with pytest.raises(LeakageError, match=r"splitter 'group_kfold', fold 0: .*groups of 'g'"):
        check_fold(dataset, Fold(0, np.concatenate([same[:1], other]), same[1:]), group_splitter)
    with pytest.raises(LeakageError, match="train ends at"):
        check_fold(dataset, Fold(2, [10, 11], [0, 1]), create("splitter", "time_series"))


def test_as_sklearn_runs_cross_val_score() -> None:
    """as_sklearn() plugs a splitter into scikit-learn's cross_val_score."""
    dataset = frame(90, groups=9)
    X = dataset.frame[["a", "b"]].to_numpy()
    y = dataset.frame["y"].to_numpy()
    splitter = create("splitter", "group_kfold", n_splits=3).as_sklearn()
    scores = cross_val_score(KNeighborsClassifier(3), X, y, groups=dataset.frame["g"], cv=splitter)
    assert len(scores) == 3 and splitter.get_n_splits() == 3


def test_get_n_splits_honours_a_plugin_that_overrides_the_former_count_folds() -> None:
    """Splitter.get_n_splits (scikit-learn's name) is the count; a splitter written before the rename
    that overrides count_folds is still asked through it."""
    from scribbles.core import Splitter

    class Old(Splitter):
        """Three folds, counted the old way."""

        name = "old"

        def split(self, dataset: Dataset):  # type: ignore[override]
            yield from ()

        def count_folds(self, dataset: Dataset | None = None) -> int:
            return 3

    assert Old().get_n_splits() == 3 and Old().as_sklearn().get_n_splits() == 3
    kfold = create("splitter", "kfold", n_splits=4)
    assert kfold.get_n_splits() == kfold.count_folds() == 4


def test_training_loop_learns_and_reports_each_epoch() -> None:
    """train_single lowers the loss on a separable problem and calls back once per epoch."""
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = (x[:, 0] > 0).long()
    model = create("model", "mlp", hidden=[16]).build(ModelSpec("tabular", (4,), 2))
    loss = create("loss", "cross_entropy").build(ModelSpec("tabular", (4,), 2))
    seen: list[int] = []
    result = train_single(model, loss, (x, y), (x, y), TrainConfig(epochs=4, lr=1e-2, batch_size=32),
                          [lambda epoch, metrics: seen.append(epoch)])
    assert seen == [0, 1, 2, 3]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    plain, tta = evaluate(result.model, x)
    assert np.mean(plain.argmax(1) == y.numpy()) > 0.9
    np.testing.assert_array_equal(plain, tta)


def test_tta_views_stack_into_one_pass_and_merge_probabilities() -> None:
    """Views are evaluated in one stacked pass, equal to one pass per view, merged on probabilities."""
    torch.manual_seed(0)
    model = create("model", "gru", hidden=8).build(ModelSpec("sequence", (12, 3), 4))
    x = torch.randn(10, 12, 3)
    views = create("tta", "time_shift", shifts=[-1, 2]).views()
    plain, tta = evaluate(model, x, views, "mean", chunk=4)
    with torch.no_grad():
        model.eval()
        per_view = torch.stack([model(v.apply(x)).softmax(-1) for v in [*views]])
        expected = torch.cat([model(x).softmax(-1)[None], per_view]).mean(0)
    np.testing.assert_allclose(tta, expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(plain, model(x).softmax(-1).detach().numpy(), atol=1e-6)


def test_merge_modes_stay_finite_and_normalised() -> None:
    """gmean and max are renormalised probabilities, never NaN."""
    probs = torch.tensor([[[0.9, 0.1]], [[0.0, 1.0]]])
    for how in ("mean", "gmean", "max"):
        merged = merge_probabilities(probs, how)
        assert torch.isfinite(merged).all()
        assert torch.allclose(merged.sum(-1), torch.ones(1))


def test_image_and_sequence_views_transform_as_named() -> None:
    """hflip mirrors the last axis; time_shift repeats the edge value."""
    image = torch.arange(4.0).reshape(1, 1, 2, 2)
    (flip,) = create("tta", "hflip").views()
    assert flip.apply(image).flatten().tolist() == [1.0, 0.0, 3.0, 2.0]
    sequence = torch.arange(5.0).reshape(1, 5, 1)
    (right,) = create("tta", "time_shift", shifts=[2]).views()
    assert right.apply(sequence).flatten().tolist() == [0.0, 0.0, 0.0, 1.0, 2.0]


def test_metrics_match_sklearn() -> None:
    """accuracy and f1_macro agree with scikit-learn."""
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.RandomState(1)
    y = rng.randint(0, 4, 100)
    proba = rng.dirichlet(np.ones(4), 100)
    assert create("metric", "accuracy").compute(y, proba) == pytest.approx(accuracy_score(y, proba.argmax(1)))
    assert create("metric", "f1_macro").compute(y, proba) == pytest.approx(
        f1_score(y, proba.argmax(1), average="macro"))
