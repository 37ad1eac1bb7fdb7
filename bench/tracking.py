"""P7: the share of training wall time spent logging to MLflow.

Runs the experiment's fold loop (the flow's own ``train_fold`` and lifecycle hooks, without Prefect)
on the demo activity data twice per repeat, in this process: the baseline with no tracker, then with
the ``mlflow`` tracker on a SQLite store (params, per-epoch metrics, fold reports, plots, one model
per fold). Prints the best wall time of each, and

    P7 = (tracked - baseline) / baseline      the wall time logging adds; target <= 0.02
    blocking / baseline                       time the training thread spent inside tracker hooks

A first tracked pass warms up (imports mlflow and matplotlib, creates the store) and is reported
apart: that is a once-per-process cost, not a per-run one.

    python bench/tracking.py [--epochs 8] [--folds 5] [--hidden 48] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from scribbles.core import FoldContext, FoldEndContext, RunEndContext, default_registry, resolve
from scribbles.core.config import parse_config
from scribbles.core.guard import fold_report
from scribbles.flows.demo_data import build_activity
from scribbles.flows.experiment import run_context, summarise, train_fold


def config(data: Path, store: str, args: argparse.Namespace, tracked: bool) -> dict[str, Any]:
    """The demo config (configs/activity.yaml) on a local copy of its data."""
    return {
        "experiment": "bench-tracking",
        "data": {"name": "file", "path": str(data), "target": "activity", "group": "subject", "time": "timestamp",
                 "kind": "sequence", "shape": [32, 3]},
        "split": {"name": "group_kfold", "n_splits": args.folds},
        "model": {"name": "gru", "hidden": args.hidden},
        "train": {"strategy": "single", "epochs": args.epochs, "batch_size": 64, "lr": 3.0e-3, "seed": 0},
        "evaluate": {"tta": {"transforms": [{"name": "time_shift", "shifts": [-2, 2]}], "merge": "mean"},
                     "metrics": ["accuracy", "f1_macro"]},
        "tracking": [{"name": "mlflow", "tracking_uri": store}] if tracked else [],
    }


def one_pass(raw: dict[str, Any], workdir: Path) -> tuple[float, float, float, dict[str, float], dict[str, float]]:
    """Wall seconds of the fold loop, seconds blocked in tracker hooks, seconds of the logging thread."""
    registry = default_registry()
    plan = resolve(parse_config(raw), registry)
    dataset = plan.data.load()
    folds = list(plan.splitter.split(dataset))
    for tracker in plan.trackers:
        registry.pm.register(tracker)
    hook = registry.hook
    try:
        start = time.perf_counter()
        run = run_context(plan, dataset, len(folds), workdir)
        hook.scribbles_run_start(ctx=run)
        outcomes = []
        for fold in folds:
            hook.scribbles_fold_start(ctx=FoldContext(run, fold, fold_report(dataset, fold)))
            outcome = train_fold.fn(plan, registry, run, dataset, fold)
            hook.scribbles_fold_end(ctx=FoldEndContext(
                run, fold.index, outcome.metrics, model=outcome.model, input_example=outcome.input_example,
                y_true=outcome.y_true, y_pred=outcome.y_pred, classes=[str(c) for c in dataset.classes],
            ))
            outcomes.append(outcome)
        hook.scribbles_run_end(ctx=RunEndContext(run, summarise(outcomes)))
        wall = time.perf_counter() - start
    finally:
        for tracker in plan.trackers:
            registry.pm.unregister(tracker)
    blocking = sum(getattr(t, "blocking_s", 0.0) for t in plan.trackers)
    busy = sum(t.worker.busy_s for t in plan.trackers if hasattr(t, "worker"))
    timings = {k: v for t in plan.trackers if hasattr(t, "worker") for k, v in t.worker.timings.items()}
    blocked = {k: v for t in plan.trackers for k, v in getattr(t, "blocking", {}).items()}
    return wall, blocking, busy, timings, blocked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        root = Path(tmp)
        data = root / "activity.csv"
        build_activity().to_csv(data, index=False)
        store = f"sqlite:///{root / 'mlflow.db'}"
        cold = one_pass(config(data, store, args, tracked=True), root)
        print(f"warm-up tracked pass (imports mlflow, matplotlib; creates the store): {cold[0]:.2f} s, "
              f"blocked in hooks {cold[1]:.2f} s")
        baseline, tracked = [], []
        for i in range(args.repeat):
            # Alternate which goes first: the machine's load drifts over minutes.
            for tracked_first in ((False, True) if i % 2 == 0 else (True, False)):
                result = one_pass(config(data, store, args, tracked=tracked_first), root)
                (tracked if tracked_first else baseline).append(result)
                print(f"  pass {i}: {'tracked ' if tracked_first else 'baseline'} {result[0]:7.2f} s", flush=True)
    base = min(b[0] for b in baseline)
    best = min(tracked, key=lambda t: t[0])
    print(f"workload: demo activity data, group_kfold x{args.folds}, GRU hidden {args.hidden}, "
          f"{args.epochs} epochs, best of {args.repeat}")
    print(f"baseline (no tracker)          {base:8.2f} s   1.000")
    print(f"mlflow tracker (SQLite)        {best[0]:8.2f} s   {best[0] / base:.3f}")
    print(f"  blocked in tracker hooks     {best[1]:8.3f} s   {best[1] / base:.4f} of baseline")
    print(f"  logging thread busy          {best[2]:8.2f} s   {best[2] / base:.4f} of baseline (overlaps training)")
    print("  blocked by hook: " + ", ".join(f"{k} {v:.3f} s" for k, v in best[4].items()))
    print("  logging thread by call: " + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(best[3].items())))
    print(f"P7 (tracked - baseline) / baseline = {(best[0] - base) / base:+.4f}   (target <= 0.02)")


if __name__ == "__main__":
    main()
