"""Splitter speed: scribbles' splitters against scikit-learn's, same data, same process.

10M rows in 100k groups (int ids, then the same ids as zero-padded strings "subject-000123", then as
random 16-digit hex strings) and 5 classes. Zero-padded ids differ in a few bits, which scribbles packs
into a table index; random hex ids do not, and go through its hash path. Each splitter makes all
its folds (``list(split(...))``) as the flow does; the time is the best of ``--repeat`` runs. Prints
seconds and the ratio scribbles / scikit-learn (below 1.00 is faster), and whether the folds are the same.

scikit-learn gets NumPy arrays (its ``groups`` argument); scribbles gets the DataFrame a data source
loads, whose string column pandas stores as Arrow strings. Building the data is not timed.

    python bench/splitters.py [--rows 10000000] [--groups 100000] [--repeat 2] [--only group_kfold]
"""

from __future__ import annotations

import argparse
import gc
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from scribbles.core import Dataset, create


def best_of(repeat: int, run: Callable[[], list]) -> tuple[float, list]:
    """The shortest wall time of ``repeat`` runs, and the last result."""
    best, result = float("inf"), []
    for _ in range(repeat):
        result = []
        gc.collect()
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def same_folds(ours: list, theirs: list) -> bool:
    """Whether two lists of (train, valid) hold the same rows, fold by fold."""
    return len(ours) == len(theirs) and all(
        np.array_equal(np.sort(a[0]), np.sort(b[0])) and np.array_equal(np.sort(a[1]), np.sort(b[1]))
        for a, b in zip(ours, theirs, strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--groups", type=int, default=100_000)
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", action="append", help="run only these cases (repeatable)")
    args = parser.parse_args()

    import sklearn
    from sklearn import model_selection as ms

    rng = np.random.RandomState(0)
    n, k = args.rows, args.splits
    group_ids = rng.randint(0, args.groups, n)
    names = np.array([f"subject-{i:06d}" for i in range(args.groups)], dtype=object)
    group_names = names[group_ids]
    y = rng.randint(0, 5, n)
    X = np.zeros((n, 1), dtype=np.float32)
    # Random 16-digit hex ids (hashes, UUID-like): too many varying bits to pack, so the hashed path.
    hex_ids = np.random.RandomState(1).randint(0, 2**63 - 1, args.groups, dtype=np.int64)
    hex_names = np.array([f"{value:016x}" for value in hex_ids.tolist()], dtype=object)[group_ids]
    frame = pd.DataFrame({"g": group_ids, "s": group_names, "h": hex_names, "y": y})
    by_int = Dataset(frame=frame, target="y", features=[], group="g")
    by_name = Dataset(frame=frame, target="y", features=[], group="s")
    by_hex = Dataset(frame=frame, target="y", features=[], group="h")
    print(f"{n:,} rows, {args.groups:,} groups, 5 classes, {k} folds; best of {args.repeat}; "
          f"scikit-learn {sklearn.__version__}, pandas {pd.__version__}; string column dtype {frame['s'].dtype}")

    cases = [
        ("group_kfold", "int groups", by_int, group_ids, ms.GroupKFold(k)),
        ("group_kfold", "string groups", by_name, group_names, ms.GroupKFold(k)),
        ("group_kfold", "hex string ids", by_hex, hex_names, ms.GroupKFold(k)),
        ("stratified_group_kfold", "int groups", by_int, group_ids, ms.StratifiedGroupKFold(k)),
        ("kfold", "shuffled", by_int, None, ms.KFold(k, shuffle=True, random_state=0)),
        ("stratified_kfold", "", by_int, None, ms.StratifiedKFold(k)),
        ("time_series", "row order", by_int, None, ms.TimeSeriesSplit(k)),
    ]
    params = {"kfold": {"shuffle": True, "seed": 0}}
    print(f"{'splitter':<24}{'case':<16}{'scikit-learn s':>15}{'scribbles s':>13}{'ratio':>8}  same folds")
    for name, case, dataset, groups, theirs in cases:
        if args.only and name not in args.only:
            continue
        splitter = create("splitter", name, n_splits=k, **params.get(name, {}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_theirs, folds_theirs = best_of(args.repeat, lambda t=theirs, g=groups: list(t.split(X, y, g)))
        t_ours, folds_ours = best_of(
            args.repeat, lambda s=splitter, d=dataset: [(f.train, f.valid) for f in s.split(d)]
        )
        same = same_folds(folds_ours, folds_theirs)
        del folds_theirs, folds_ours
        ratio = t_ours / t_theirs
        print(f"{name:<24}{case:<16}{t_theirs:>15.2f}{t_ours:>13.2f}{ratio:>7.3f}x  {'yes' if same else 'NO'}",
              flush=True)


if __name__ == "__main__":
    main()
