"""Search with pruning against a full grid, on the shipped ``configs/search.yaml`` (CPU, fixed seeds).

Three sweeps over the same space and trial budget (the grid's size): (a) Optuna's grid sampler without
pruning (every trial trains every fold to the last epoch), (b) TPE with the median pruner (per epoch of
every fold), (c) TPE with the Wilcoxon pruner (per fold). For each: the best trial's mean accuracy over
the folds (and its fold standard deviation), the fold-epochs trained (epochs counted through the
``scribbles_epoch_end`` hook, every fold of every trial; folds reused from an identical earlier fold,
when TPE repeats a trial's parameters, are counted apart) and the wall time. The goal (issue 19): (b) or
(c) within one fold standard deviation of (a)'s best mean while training at most half of (a)'s
fold-epochs. Then ``sweep.parallel: 2`` against 1 when the build supports it.

The data are the activity demo set (``scribbles.flows.demo_data.build_activity``) written to a temporary
project, read through the ``file`` source, tracked in a temporary SQLite MLflow store::

    python bench/search.py [--force] [--parallel]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scribbles.core import EpochContext, FoldContext, hookimpl, load_config
from scribbles.core.sweep import grid_size

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "search.yaml"
#: ``--force``: a trial that repeats an earlier trial's parameters trains again (by default its folds are
#: reused from the identical earlier folds, as `scribbles run` does; the grid never repeats).
FORCE = "--force" in sys.argv


class EpochCounter:
    """Counts the epochs trained (every fold of every trial) and the epochs of folds reused from an
    identical earlier fold (a trial whose parameters repeat an earlier trial's: no training)."""

    def __init__(self) -> None:
        self.epochs = 0
        self.reused_epochs = 0
        self.reused: set[tuple[int, int]] = set()

    @hookimpl
    def scribbles_fold_start(self, ctx: FoldContext) -> None:
        if ctx.reuse:
            self.reused.add((id(ctx.run), ctx.fold.index))

    @hookimpl
    def scribbles_epoch_end(self, ctx: EpochContext) -> None:
        if (id(ctx.run), ctx.fold_index) in self.reused:
            self.reused_epochs += 1
        else:
            self.epochs += 1


def sweep_of(base: dict[str, Any], variant: dict[str, Any]) -> dict[str, Any]:
    raw = {**base, "sweep": {**base["sweep"], "optuna": {**base["sweep"]["optuna"], **variant}}}
    return raw


def run(raw: dict[str, Any], name: str) -> dict[str, Any]:
    from scribbles.flows.experiment import experiment
    from scribbles.flows.lifecycle import observing

    counter = EpochCounter()
    start = time.perf_counter()
    with observing(counter):
        result = experiment({**raw, "experiment": name}, force=FORCE)
    seconds = time.perf_counter() - start
    best = result["trials"][0]["summary"]
    pruned = sum(1 for t in result["trials"] if t.get("pruned"))
    return {"best": best["accuracy_mean"], "std": best["accuracy_std"], "epochs": counter.epochs,
            "reused": counter.reused_epochs,
            "seconds": seconds, "pruned": pruned, "trials": len(result["trials"])}


def main() -> None:
    from scribbles.flows.demo_data import build_activity, write_csv
    from scribbles.flows.prefect_server import orchestrated

    config = load_config(CONFIG, ["data.name=file"])
    base = config.model_dump(mode="json")
    budget = grid_size(config.sweep)
    with tempfile.TemporaryDirectory(prefix="scribbles-bench-search-") as tmp:
        os.chdir(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        (Path(tmp) / "data").mkdir()
        write_csv(build_activity(), Path(tmp) / "data" / "activity.csv")
        variants = {
            "(a) grid, no pruning": {"sampler": "grid", "pruner": "none", "trials": budget},
            "(b) TPE + median": {"sampler": "tpe", "pruner": "median", "trials": budget},
            "(c) TPE + wilcoxon": {"sampler": "tpe", "pruner": "wilcoxon", "trials": budget},
        }
        rows = {}
        with orchestrated():
            for label, variant in variants.items():
                rows[label] = run(sweep_of(base, variant), f"bench-search-{label[1]}")
                row = rows[label]
                print(f"{label:24s} best accuracy {row['best']:.4f} ± {row['std']:.4f}  fold-epochs "
                      f"{row['epochs']:4d} (+{row['reused']} reused)  pruned {row['pruned']}/{row['trials']}  "
                      f"{row['seconds']:.1f} s", flush=True)
            grid = rows["(a) grid, no pruning"]
            for label in list(variants)[1:]:
                row = rows[label]
                close = row["best"] >= grid["best"] - grid["std"]
                ratio = row["epochs"] / grid["epochs"]
                print(f"{label}: best mean {'within' if close else 'NOT within'} one fold std of the grid's "
                      f"({row['best'] - grid['best']:+.4f}), fold-epochs {ratio:.2f}x the grid's "
                      f"({'goal met' if close and ratio <= 0.5 else 'goal not met'})")
            if "--parallel" in sys.argv:
                one = run(sweep_of(base, {"sampler": "random", "pruner": "none", "trials": 4}), "bench-search-p1")
                raw = sweep_of(base, {"sampler": "random", "pruner": "none", "trials": 4})
                raw["sweep"]["parallel"] = 2
                two = run(raw, "bench-search-p2")
                print(f"sweep.parallel 2 vs 1 (random, 4 trials): {two['seconds']:.1f} s vs {one['seconds']:.1f} s "
                      f"({one['seconds'] / two['seconds']:.2f}x); best {two['best']:.4f} vs {one['best']:.4f}")


if __name__ == "__main__":
    main()
