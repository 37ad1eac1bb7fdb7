"""Splitters on random data (hypothesis): the guard's invariants, coverage, determinism, scikit-learn parity."""

from __future__ import annotations

import itertools
import re
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scribbles.core import BadInput, ConfigError, Dataset, Fold, LeakageError, create
from scribbles.core.data import (
    check_fold,
    check_folds,
    column_codes,
    factorize,
    fixed_width_rows,
    guarded_folds,
    hashed_codes,
    packed_codes,
    read_times,
    shared_codes,
    varying_bits,
)
from scribbles.plugins.splitters import common
from scribbles.plugins.splitters.common import folds_from_assignment, lightest_first
from sklearn import model_selection as ms

# Derandomized: CI sees the same examples every run; no example database is written.
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

SPLITTERS = ("kfold", "stratified_kfold", "shuffle", "time_series", "group_kfold", "stratified_group_kfold",
             "group_shuffle", "leave_one_group_out", "purged_group_time_series")
#: Splitters whose valid sides together hold every row exactly once.
COVERING = {"kfold", "stratified_kfold", "group_kfold", "stratified_group_kfold", "leave_one_group_out"}


def make_dataset(n: int, n_groups: int, n_classes: int, n_times: int, seed: int, time: bool = True,
                 groups_in_time: bool = False) -> Dataset:
    """Random labels and groups; timestamps drawn from ``n_times`` hours, shuffled, so many rows share one.

    ``groups_in_time`` makes each group a run of consecutive hours (an event, a trading day), as purged
    group time series splits expect; otherwise every group spans the whole time range.
    """
    rng = np.random.RandomState(seed)
    hours = rng.randint(0, n_times, n)
    groups = hours * n_groups // n_times if groups_in_time else rng.randint(0, n_groups, n)
    frame = pd.DataFrame({
        "y": rng.randint(0, n_classes, n),
        "g": groups * 3 + 100,
        "t": (pd.Timestamp("2026-01-01") + pd.to_timedelta(hours, unit="h")).astype(str),
        "a": rng.randn(n),
    })
    return Dataset(frame=frame, target="y", features=["a"], group="g", time="t" if time else None)


@st.composite
def datasets(draw: st.DrawFn, time: bool = True, rows: int = 2, groups: int = 1, times: int = 1,
             groups_in_time: bool = False) -> Dataset:
    """Random datasets of at least ``rows`` rows, ``groups`` group ids and ``times`` distinct hours drawn from."""
    return make_dataset(
        n=draw(st.integers(rows, 90)), n_groups=draw(st.integers(groups, 14)), n_classes=draw(st.integers(1, 4)),
        n_times=draw(st.integers(times, 40)), seed=draw(st.integers(0, 2**16)), time=time,
        groups_in_time=groups_in_time,
    )


#: Dataset sizes per splitter that let most drawn examples be split rather than refused: a purged split
#: needs n_splits + 1 blocks of whole groups in time order (plus gap and embargo) before it has anything to do.
ENOUGH: dict[str, dict] = {
    "purged_group_time_series": {"rows": 60, "groups": 12, "times": 30, "groups_in_time": True},
    "time_series": {"rows": 30, "times": 20},
    **{name: {"rows": 30, "groups": 8} for name in ("group_kfold", "stratified_group_kfold")},
}
#: The share of drawn examples each splitter must accept (split, not refuse as bad input) for the promises
#: to be checked on more than a handful of cases.
MIN_ACCEPTED = 0.5


@st.composite
def span(draw: st.DrawFn, low: int = 0, high: int = 6) -> int | str:
    """A row count or a duration in hours."""
    count = draw(st.integers(low, high))
    return count if draw(st.booleans()) else f"{max(count, low)}h"


@st.composite
def params_for(draw: st.DrawFn, name: str) -> dict:
    """Random parameters for splitter ``name``."""
    k = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 1000))
    if name in ("kfold", "stratified_kfold", "group_kfold", "stratified_group_kfold"):
        return {"n_splits": k, "shuffle": draw(st.booleans()), "seed": seed}
    if name in ("shuffle", "group_shuffle"):
        return {"n_splits": k, "seed": seed, "test_size": draw(st.sampled_from([None, 0.25, 0.5, 1, 2]))}
    if name == "time_series":
        return {"n_splits": k, "gap": draw(span()), "test_size": draw(st.one_of(st.none(), span(1, 8))),
                "max_train_size": draw(st.one_of(st.none(), span(1, 20))),
                "window": draw(st.sampled_from(["expanding", "sliding"]))}
    if name == "purged_group_time_series":
        return {"n_splits": draw(st.integers(2, 3)), "gap": draw(span(0, 2)), "embargo": draw(span(0, 2)),
                "test_size": draw(st.one_of(st.none(), st.integers(1, 2))),
                "max_train_groups": draw(st.one_of(st.none(), st.integers(1, 5)))}
    return {}


def split_or_refuse(name: str, dataset: Dataset, params: dict) -> list[Fold] | None:
    """The guarded folds, or None when the splitter refuses these arguments as bad input."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return guarded_folds(create("splitter", name, **params), dataset)
        except BadInput as exc:
            message = str(exc)
            assert message.startswith(("split.", "data.")), message  # names the field
            assert any(ch.isdigit() for ch in message), message  # and the numbers
            return None


@pytest.mark.parametrize("name", SPLITTERS)
def test_every_splitter_keeps_its_promises(name: str) -> None:
    """Guard passes, positions are sorted and disjoint, coverage as promised, same folds every time; and most
    drawn examples are split, not refused, so the promises are checked on many cases."""
    outcomes: list[bool] = []

    @PROPERTY
    @given(dataset=datasets(**ENOUGH.get(name, {})), data=st.data())
    def check(dataset: Dataset, data: st.DataObject) -> None:
        params = data.draw(params_for(name))
        folds = split_or_refuse(name, dataset, params)
        outcomes.append(folds is not None)
        if folds is None:
            return
        n = len(dataset)
        for fold in folds:
            for rows in (fold.train, fold.valid):
                assert rows.dtype == np.int64 and np.all(np.diff(rows) > 0)
                assert rows.min() >= 0 and rows.max() < n
            assert not np.intersect1d(fold.train, fold.valid).size
        valid = np.concatenate([f.valid for f in folds])
        if name in COVERING:
            np.testing.assert_array_equal(np.sort(valid), np.arange(n))
        if name in ("time_series", "purged_group_time_series"):
            assert len(np.unique(valid)) == len(valid)  # valid blocks never overlap
        if name in ("time_series", "purged_group_time_series"):
            times = read_times(dataset).values
            for fold in folds:  # rows sharing a timestamp never straddle train and valid
                assert not np.intersect1d(times[fold.train], times[fold.valid]).size
                assert times[fold.train].max() < times[fold.valid].min()
        again = split_or_refuse(name, dataset, params)
        assert again is not None and len(again) == len(folds)
        for a, b in zip(folds, again, strict=True):
            np.testing.assert_array_equal(a.train, b.train)
            np.testing.assert_array_equal(a.valid, b.valid)

    check()
    assert sum(outcomes) >= MIN_ACCEPTED * len(outcomes), f"{name}: split {sum(outcomes)} of {len(outcomes)} examples"


def sklearn_folds(splitter: object, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> list | str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return [(np.sort(a), np.sort(b)) for a, b in splitter.split(X, y, groups)]
        except ValueError:
            return "ValueError"


def _counterpart(name: str, params: dict) -> object:
    k, seed = params.get("n_splits", 5), params.get("seed")
    shuffle = params.get("shuffle", False)
    random_state = seed if shuffle else None
    return {
        "kfold": lambda: ms.KFold(k, shuffle=shuffle, random_state=random_state),
        "stratified_kfold": lambda: ms.StratifiedKFold(k, shuffle=shuffle, random_state=random_state),
        "shuffle": lambda: ms.ShuffleSplit(k, test_size=params.get("test_size"), random_state=seed),
        "group_kfold": lambda: ms.GroupKFold(k, shuffle=shuffle, random_state=random_state),
        "stratified_group_kfold": lambda: ms.StratifiedGroupKFold(k, shuffle=shuffle, random_state=random_state),
        "group_shuffle": lambda: ms.GroupShuffleSplit(k, test_size=params.get("test_size"), random_state=seed),
        "leave_one_group_out": ms.LeaveOneGroupOut,
    }[name]()


@pytest.mark.parametrize("name", ["kfold", "stratified_kfold", "shuffle", "group_kfold", "stratified_group_kfold",
                                  "group_shuffle", "leave_one_group_out"])
def test_as_sklearn_gives_sklearns_folds(name: str) -> None:
    """Through as_sklearn(), the same folds as scikit-learn's splitter, and ValueError where it raises one."""

    @PROPERTY
    @given(dataset=datasets(time=False), data=st.data())
    def check(dataset: Dataset, data: st.DataObject) -> None:
        params = data.draw(params_for(name))
        X, y, groups = dataset.frame[["a"]].to_numpy(), dataset.frame["y"].to_numpy(), dataset.frame["g"].to_numpy()
        theirs = sklearn_folds(_counterpart(name, params), X, y, groups)
        ours = sklearn_folds(create("splitter", name, **params).as_sklearn(), X, y, groups)
        if isinstance(theirs, str) or isinstance(ours, str):
            assert ours == theirs
            return
        assert len(ours) == len(theirs)
        for (a_train, a_valid), (b_train, b_valid) in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a_train, b_train)
            np.testing.assert_array_equal(a_valid, b_valid)

    check()


def test_stratified_group_kfold_is_sklearns_with_many_classes_and_folds() -> None:
    """The fold choice turns on the last bit of a float; ours follows scikit-learn's bit for bit."""
    for seed in range(12):
        dataset = make_dataset(600, 60, 2 + seed % 8, 10, seed, time=False)
        k = 2 + seed % 9
        X, y, groups = dataset.frame[["a"]].to_numpy(), dataset.frame["y"].to_numpy(), dataset.frame["g"].to_numpy()
        theirs = sklearn_folds(ms.StratifiedGroupKFold(k), X, y, groups)
        ours = sklearn_folds(create("splitter", "stratified_group_kfold", n_splits=k).as_sklearn(), X, y, groups)
        assert isinstance(ours, list) and len(ours) == len(theirs) == k
        for (a_train, a_valid), (b_train, b_valid) in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a_valid, b_valid)
            np.testing.assert_array_equal(a_train, b_train)


@PROPERTY
@given(n=st.integers(1, 120), k=st.integers(2, 8), gap=st.integers(0, 10),
       test_size=st.one_of(st.none(), st.integers(1, 20)), max_train_size=st.one_of(st.none(), st.integers(1, 50)))
def test_row_order_time_series_is_time_series_split(n: int, k: int, gap: int, test_size: int | None,
                                                    max_train_size: int | None) -> None:
    """Without a time column, time_series gives exactly TimeSeriesSplit's folds, or a ValueError where it does."""
    X = np.zeros((n, 1))
    theirs = sklearn_folds(ms.TimeSeriesSplit(k, gap=gap, test_size=test_size, max_train_size=max_train_size), X,
                           None, None)
    ours = sklearn_folds(create("splitter", "time_series", n_splits=k, gap=gap, test_size=test_size,
                                max_train_size=max_train_size).as_sklearn(), X, None, None)
    assert ours == theirs if isinstance(theirs, str) else not isinstance(ours, str)
    if isinstance(theirs, list):
        assert len(ours) == len(theirs)
        for (a_train, a_valid), (b_train, b_valid) in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a_train, b_train)
            np.testing.assert_array_equal(a_valid, b_valid)


@PROPERTY
@given(counts=st.lists(st.integers(1, 6), min_size=0, max_size=60), k=st.integers(2, 7))
def test_lightest_first_is_the_sequential_greedy(counts: list[int], k: int) -> None:
    """The vectorised greedy equals scikit-learn's one-item-at-a-time loop."""
    weights = np.sort(np.asarray(counts, dtype=np.int64))[::-1]
    loads = np.zeros(k)
    expected = []
    for weight in weights:
        lightest = int(np.argmin(loads))
        expected.append(lightest)
        loads[lightest] += weight
    np.testing.assert_array_equal(lightest_first(weights, k), expected)


def test_a_time_column_that_is_not_timestamps_is_one_bad_input_line() -> None:
    frame = pd.DataFrame({"t": ["2026-01-01", "yesterday", "2026-01-03"], "x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    dataset = Dataset(frame=frame, target="y", features=["x"], time="t")
    with pytest.raises(BadInput, match=r"^data.time: column 't' holds values that are not timestamps \(.*\); "
                                       r"use ISO dates like 2026-01-31T12:00:00$"):
        read_times(dataset)


def test_time_series_by_timestamps_with_durations() -> None:
    """Durations: gap between sides, valid blocks of test_size, train windows no longer than max_train_size."""
    rng = np.random.RandomState(0)
    stamps = pd.Timestamp("2026-01-01") + pd.to_timedelta(np.sort(rng.uniform(0, 3 * 24 * 60, 3000)), unit="min")
    frame = pd.DataFrame({"t": stamps.astype(str), "y": rng.randint(0, 2, 3000)}).sample(frac=1, random_state=1)
    dataset = Dataset(frame=frame.reset_index(drop=True), target="y", features=[], time="t")
    times = pd.to_datetime(dataset.frame["t"])
    folds = guarded_folds(create("splitter", "time_series", n_splits=4, gap="3h", test_size="6h",
                                 max_train_size="12h"), dataset)
    assert len(folds) == 4
    for before, after in itertools.pairwise(folds):
        assert times.iloc[before.valid].max() < times.iloc[after.valid].min()  # later blocks, in order
    for fold in folds:
        train, valid = times.iloc[fold.train], times.iloc[fold.valid]
        assert train.max() + pd.Timedelta("3h") < valid.min()
        assert valid.max() - valid.min() < pd.Timedelta("6h")
        assert train.max() - train.min() < pd.Timedelta("12h")
    assert times.iloc[folds[-1].valid].max() == times.max()  # the last block ends with the data
    sliding = guarded_folds(create("splitter", "time_series", n_splits=3, window="sliding"), dataset)
    lengths = [len(np.unique(times.iloc[f.train])) for f in sliding]
    assert len(set(lengths)) == 1  # every window as long as the first


def test_purged_group_time_series_purges_and_embargoes() -> None:
    """Groups that overlap the valid block are purged; groups right after an earlier block are embargoed."""
    # 24 sessions (groups) of 3 rows, one every 2 hours, each lasting an hour; rows in random order.
    starts = pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(24) * 2, unit="h")
    rows = [(g, start + pd.Timedelta(minutes=30 * i)) for g, start in enumerate(starts) for i in range(3)]
    frame = pd.DataFrame(rows, columns=["session", "t"]).sample(frac=1, random_state=0).reset_index(drop=True)
    frame["y"] = 0
    dataset = Dataset(frame=frame, target="y", features=[], group="session", time="t")
    splitter = create("splitter", "purged_group_time_series", n_splits=3, gap="3h", embargo="3h", test_size=4)
    folds = guarded_folds(splitter, dataset)
    sessions = frame["session"].to_numpy()
    times = frame["t"]
    for fold in folds:
        assert not set(sessions[fold.train]) & set(sessions[fold.valid])
        assert times.iloc[fold.train].max() + pd.Timedelta("3h") < times.iloc[fold.valid].min()
    assert [sorted(set(sessions[f.valid])) for f in folds] == [[12, 13, 14, 15], [16, 17, 18, 19], [20, 21, 22, 23]]
    # Fold 0 validates from 24h: sessions ending 3h before (by 21h) train, so up to session 9.
    assert set(sessions[folds[0].train]) == set(range(10))
    assert set(sessions[folds[1].train]) == set(range(14))
    # Fold 0's block ends at 31h: sessions 16 and 17 start within the 3h embargo after it, so fold 2
    # (which trains up to session 17 otherwise) leaves them out.
    assert set(sessions[folds[2].train]) == set(range(16))


def test_stratified_group_kfold_keeps_class_shares() -> None:
    """Each valid fold's class shares stay close to the whole data's (and closer than plain group_kfold)."""
    rng = np.random.RandomState(3)
    groups = np.repeat(np.arange(300), rng.randint(5, 30, 300))
    bias = rng.dirichlet(np.ones(3) * 0.7, 300)[groups]  # groups differ in their class mix
    y = np.array([rng.choice(3, p=p) for p in bias])
    dataset = Dataset(frame=pd.DataFrame({"y": y, "g": groups}), target="y", features=[], group="g")
    whole = np.bincount(y, minlength=3) / len(y)

    def worst(name: str) -> float:
        folds = guarded_folds(create("splitter", name, n_splits=5), dataset)
        return max(np.abs(np.bincount(y[f.valid], minlength=3) / len(f.valid) - whole).max() for f in folds)

    assert worst("stratified_group_kfold") < 0.02 < worst("group_kfold")


def test_group_kfold_balances_rows_and_string_groups_work() -> None:
    """Fold sizes are as even as the groups allow; string, Arrow and category group columns give the same folds."""
    dataset = make_dataset(5000, 97, 2, 5, 7, time=False)
    by_int = guarded_folds(create("splitter", "group_kfold", n_splits=5), dataset)
    sizes = [len(f.valid) for f in by_int]
    assert max(sizes) - min(sizes) <= dataset.frame["g"].value_counts().max()
    names = dataset.frame.assign(g=dataset.frame["g"].map(lambda v: f"subject-{v:04d}"))
    shuffled = pd.Categorical(names["g"], categories=[*sorted(set(names["g"]), reverse=True), "unused"])
    for column in (names["g"].astype(object), names["g"].astype("string[pyarrow]"), shuffled):
        frame = names.assign(g=column)
        by_name = list(create("splitter", "group_kfold", n_splits=5).split(
            Dataset(frame=frame, target="y", features=[], group="g")))
        for a, b in zip(by_int, by_name, strict=True):
            np.testing.assert_array_equal(a.valid, b.valid)


@PROPERTY
@given(st.lists(st.text(alphabet="ab0-\x00\u00e9", min_size=0, max_size=20), min_size=1, max_size=6),
       st.lists(st.integers(0, 5), min_size=1, max_size=60), st.booleans(), st.booleans())
def test_string_codes_match_pandas(names: list[str], picks: list[int], pad: bool, large: bool) -> None:
    """Arrow string columns, fixed width (padded) or not, are coded as pandas codes the Python strings."""
    width = max(len(name.encode()) for name in names)
    if pad:  # one byte length for all: the fast path (bytes, so multi-byte characters count as they are)
        names = [name + "x" * (width - len(name.encode())) for name in names]
    values = [names[i % len(names)] for i in picks]
    column = pd.Series(values, dtype=pd.ArrowDtype(pa.large_string() if large else pa.string()))
    expected = {sort: pd.factorize(np.array(values, dtype=object), sort=sort) for sort in (True, False)}
    for sort, (codes, uniques) in expected.items():
        got, count = factorize(column, sort=sort)
        assert count == len(uniques)
        np.testing.assert_array_equal(got, codes)
        # A slice starts inside the buffers: offsets and data are read from there.
        sliced = column.iloc[1:]
        if len(sliced):
            want, _ = pd.factorize(np.array(values[1:], dtype=object), sort=sort)
            np.testing.assert_array_equal(factorize(sliced, sort=sort)[0], want)


def test_fixed_width_codes_check_hash_collisions() -> None:
    """Two 16-byte ids built to share the word hash are told apart (by Arrow, after the check fails)."""
    mask = (1 << 64) - 1
    a, b = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9  # the hash's multipliers

    def first_word_mix(word: int) -> int:
        return (word * a) & mask

    w0, w1, other_w0 = 1, 2, 3
    other_w1 = w1 ^ first_word_mix(w0) ^ first_word_mix(other_w0)  # ((w0 * a) ^ w1) * b is the same
    assert ((first_word_mix(w0) ^ w1) * b) & mask == ((first_word_mix(other_w0) ^ other_w1) * b) & mask
    ids = [w0.to_bytes(8, "little") + w1.to_bytes(8, "little"),
           other_w0.to_bytes(8, "little") + other_w1.to_bytes(8, "little")]
    values = pa.array([ids[0], ids[1], ids[0], ids[1], ids[1]], type=pa.binary())
    rows = fixed_width_rows(values)
    assert rows is not None and packed_codes(rows) is None  # too many varying bits to pack
    assert hashed_codes(values, rows, True) is None  # the word check caught the collision
    codes, count = factorize(pd.Series(pd.arrays.ArrowExtensionArray(values)))
    assert count == 2
    np.testing.assert_array_equal(codes, [0, 1, 0, 1, 1] if ids[0] < ids[1] else [1, 0, 1, 0, 0])


@PROPERTY
@given(st.integers(1, 70), st.integers(1, 4), st.integers(1, 300), st.integers(0, 7), st.integers(0, 2**32 - 1))
def testpacked_codes_are_sorted_exact_codes(width: int, varying: int, rows: int, skip: int, seed: int) -> None:
    """Ids differing in a few bytes (any bits of them) are packed into sorted codes equal to pandas'."""
    rng = np.random.RandomState(seed)
    base = rng.randint(0, 256, width).astype(np.uint8)
    places = rng.choice(width, size=min(varying, width), replace=False)
    masks = rng.randint(1, 256, len(places)).astype(np.uint8)  # scattered bits as well as runs
    matrix = np.tile(base, (rows, 1))
    matrix[:, places] ^= rng.randint(0, 256, (rows, len(places))).astype(np.uint8) & masks
    values = pa.array([bytes(row) for row in matrix], type=pa.binary())[skip % rows :]
    want = np.bitwise_or.reduce(matrix[skip % rows :], axis=0) ^ np.bitwise_and.reduce(matrix[skip % rows :], axis=0)
    fixed = fixed_width_rows(values)
    assert fixed is not None
    np.testing.assert_array_equal(varying_bits(fixed), want)
    packed = packed_codes(fixed)
    if int(sum(int(mask).bit_count() for mask in want)) <= 16:
        assert packed is not None
    if packed is not None:
        codes, uniques = pd.factorize(np.array(values.to_pylist(), dtype=object), sort=True)
        assert packed[1] == len(uniques)
        np.testing.assert_array_equal(packed[0], codes)


def test_fixed_width_ids_take_the_packed_path_on_large_data() -> None:
    """Zero-padded ids over 2^19 rows pack (20 varying bits fit 2x the rows) and match sorted pandas codes."""
    ids = np.random.RandomState(0).randint(0, 100_000, 1 << 19)
    names = np.array([f"subject-{i:06d}" for i in range(100_000)], dtype=object)[ids]
    column = pd.Series(names, dtype=pd.ArrowDtype(pa.string()))
    rows = fixed_width_rows(column.array._pa_array.chunk(0))
    assert rows is not None
    packed = packed_codes(rows)
    assert packed is not None
    want, uniques = pd.factorize(names, sort=True)
    np.testing.assert_array_equal(packed[0], want)
    assert packed[1] == len(uniques)
    np.testing.assert_array_equal(factorize(column)[0], want)


def test_large_folds_are_built_on_two_threads_with_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above PARALLEL_ROWS the train side is written by a helper thread; the folds are the one-thread folds."""
    row_fold = np.random.RandomState(1).randint(-1, 4, 5000).astype(np.int8)
    alone = [(f.train, f.valid) for f in folds_from_assignment(row_fold, 4)]
    monkeypatch.setattr(common, "PARALLEL_ROWS", 1000)
    threads: set[str] = set()
    real = np.flatnonzero

    def spy(mask: np.ndarray) -> np.ndarray:
        import threading

        threads.add(threading.current_thread().name)
        return real(mask)

    monkeypatch.setattr(np, "flatnonzero", spy)
    shared = [(f.train, f.valid) for f in folds_from_assignment(row_fold, 4)]
    left_out = np.flatnonzero(row_fold < 0)
    for index, ((train, valid), (train2, valid2)) in enumerate(zip(alone, shared, strict=True)):
        np.testing.assert_array_equal(train, train2)
        np.testing.assert_array_equal(valid, valid2)
        np.testing.assert_array_equal(valid, np.flatnonzero(row_fold == index))
        assert len(train) + len(valid) + len(left_out) == len(row_fold)
        assert not np.isin(left_out, train).any() and not np.isin(valid, train).any()
    if common._second_core() is not None:
        assert any(name.startswith("scribbles-folds") for name in threads)


def test_ids_filling_their_range_are_their_own_codes_read_only() -> None:
    """Ids 1..k (all present) give codes ids - 1 without a table; ids with holes are renumbered densely."""
    frame = pd.DataFrame({"g": np.array([3, 1, 2, 2, 1, 3, 3])})
    codes, count = factorize(frame["g"])
    assert count == 3 and not codes.flags.writeable
    np.testing.assert_array_equal(codes, [2, 0, 1, 1, 0, 2, 2])
    frame.loc[0, "g"] = 9  # the frame itself stays writable
    holes, count = factorize(pd.Series([10, 40, 10, 70]))
    assert count == 3
    np.testing.assert_array_equal(holes, [0, 1, 0, 2])


def test_shared_codes_factorise_a_column_once_per_block() -> None:
    """Inside shared_codes the splitter's group codes are the guard's (same array); outside, read afresh."""
    dataset = make_dataset(400, 13, 2, 5, 3, time=False)
    frame = dataset.frame
    assert column_codes(frame, "g") is not column_codes(frame, "g")
    with shared_codes():
        first = column_codes(frame, "g")
        assert column_codes(frame, "g")[0] is first[0]
        assert not first[0].flags.writeable
        with shared_codes():
            assert column_codes(frame, "g")[0] is first[0]
    frame.loc[0, "g"] = -5  # a new group: a later block sees it
    with shared_codes():
        codes, count = column_codes(frame, "g")
    assert count == first[1] + 1 and codes[0] == 0
    folds = guarded_folds(create("splitter", "group_kfold", n_splits=3), dataset)
    assert sum(len(f.valid) for f in folds) == len(frame)


def test_bad_input_names_the_field_and_the_numbers() -> None:
    """Each mistake is BadInput (exit 2) naming the field and the numbers, never a traceback."""
    small = make_dataset(30, 4, 2, 10, 0)
    cases = [
        ("group_kfold", {"n_splits": 9}, small, "split.n_splits: group_kfold asks for 9 folds but the data has 4 "
                                                "groups"),
        ("kfold", {"n_splits": 40}, small, "split.n_splits: kfold asks for 40 folds but the data has 30 rows"),
        ("time_series", {"n_splits": 3, "gap": 8}, small, "leaves no training data out of 10 time steps"),
        ("time_series", {"n_splits": 2, "gap": "30D"}, small, "split.gap: fold 0 of time_series has no training"),
        ("purged_group_time_series", {"n_splits": 4}, small, "needs n_splits + 1 = 5 blocks of groups but the data "
                                                             "has 4 groups"),
        ("leave_one_group_out", {}, make_dataset(10, 1, 2, 3, 0), "needs at least 2 groups; column 'g' has 1"),
    ]
    for name, params, dataset, message in cases:
        with pytest.raises(BadInput, match=re.escape(message)):
            guarded_folds(create("splitter", name, **params), dataset)
    row_order = make_dataset(30, 4, 2, 10, 0, time=False)
    with pytest.raises(BadInput, match=r"split.gap: a duration .* needs a datetime time column; there is no data.time"):
        guarded_folds(create("splitter", "time_series", gap="1D"), row_order)
    with pytest.raises(ConfigError, match=r"splitter.gap: .*'soon' is neither a row count nor a duration"):
        create("splitter", "time_series", gap="soon")
    with pytest.raises(ConfigError, match=r"splitter.embargo: .*-2 is negative"):
        create("splitter", "purged_group_time_series", embargo=-2)
    no_group = make_dataset(30, 4, 2, 10, 0)
    no_group.group = None
    for name in ("group_kfold", "stratified_group_kfold", "group_shuffle", "leave_one_group_out",
                 "purged_group_time_series"):
        with pytest.raises(BadInput, match=f"data.group: splitter '{name}' keeps every group on one side"):
            guarded_folds(create("splitter", name, n_splits=2) if name != "leave_one_group_out"
                          else create("splitter", name), no_group)
    holes = make_dataset(30, 4, 2, 10, 0)
    holes.frame.loc[[3, 7], "g"] = np.nan
    with pytest.raises(BadInput, match=r"data.group: column 'g' has 2 missing values of 30 rows \(first at row 3\)"):
        guarded_folds(create("splitter", "group_kfold", n_splits=2), holes)
    holes = make_dataset(30, 4, 2, 10, 0)
    holes.frame.loc[5, "t"] = None
    with pytest.raises(BadInput, match=r"data.time: column 't' has 1 missing value of 30 rows \(first at row 5\)"):
        guarded_folds(create("splitter", "time_series", n_splits=2), holes)
    missing = make_dataset(30, 4, 2, 10, 0)
    missing.group = "subject"
    with pytest.raises(BadInput, match=r"data.group: column 'subject' is not in the data; columns: y, g, t, a"):
        guarded_folds(create("splitter", "group_kfold", n_splits=2), missing)


def test_guard_stops_every_kind_of_leak() -> None:
    """Rows, groups and times on the wrong side, positions outside the data, empty sides."""
    dataset = make_dataset(40, 5, 2, 40, 0)
    groups = dataset.frame["g"].to_numpy()
    grouped = create("splitter", "group_kfold")
    with pytest.raises(LeakageError, match=r"splitter 'group_kfold', fold 3: 1 rows on both sides, e.g. row 2"):
        check_fold(dataset, Fold(3, [0, 1, 2], [2, 3]), grouped)
    same, other = np.flatnonzero(groups == groups[0]), np.flatnonzero(groups != groups[0])
    leaked = rf"fold 0: 1 groups of 'g' on both sides, e.g. {groups[0]} \(valid row {same[1]}\)"
    with pytest.raises(LeakageError, match=leaked):
        check_fold(dataset, Fold(0, np.r_[same[:1], other], same[1:]), grouped)
    with pytest.raises(LeakageError, match="valid row 40 is outside the data"):
        check_fold(dataset, Fold(0, [0], [40]), grouped)
    with pytest.raises(LeakageError, match="empty valid side"):
        check_fold(dataset, Fold(0, [0], []), grouped)
    times = pd.to_datetime(dataset.frame["t"])
    order = np.argsort(times.to_numpy(), kind="stable")
    timed = create("splitter", "time_series", gap="2h")
    early, late = order[:10], order[-10:]
    check_fold(dataset, Fold(0, early, late), timed)
    with pytest.raises(LeakageError, match=r"train ends at .* but valid starts at .*\(gap '2h'\)"):
        check_fold(dataset, Fold(1, late, early), timed)
    hour = times.iloc[early].max()
    close = np.flatnonzero((times > hour) & (times <= hour + pd.Timedelta("2h")))
    if len(close):
        with pytest.raises(LeakageError, match="train must end more than the gap before valid starts"):
            check_fold(dataset, Fold(2, early, close), timed)
    with pytest.raises(LeakageError, match="made no folds"):
        check_folds(dataset, [], grouped)


@pytest.mark.parametrize("name", SPLITTERS)
def test_as_sklearn_runs_cross_val_score(name: str) -> None:
    """Every splitter plugs into scikit-learn's cross_val_score through as_sklearn()."""
    from sklearn.neighbors import KNeighborsClassifier

    dataset = make_dataset(120, 12, 2, 120, 4, time=False)
    X, y, groups = dataset.frame[["a"]].to_numpy(), dataset.frame["y"].to_numpy(), dataset.frame["g"].to_numpy()
    if name == "purged_group_time_series":
        groups = np.repeat(np.arange(12), 10)  # rows in time order, one session after another
    params = {} if name == "leave_one_group_out" else {"n_splits": 3}
    cv = create("splitter", name, **params).as_sklearn()
    scores = ms.cross_val_score(KNeighborsClassifier(3), X, y, groups=groups, cv=cv)
    # The scores are KNN's accuracy on our own folds, computed by hand from the same folds.
    folds = list(cv.split(X, y, groups))
    expected = [KNeighborsClassifier(3).fit(X[train], y[train]).score(X[valid], y[valid]) for train, valid in folds]
    assert len(scores) == cv.get_n_splits(X, y, groups) == len(folds)
    np.testing.assert_allclose(scores, expected)
