"""What orchestration costs on one whole run: ``scribbles run configs/activity.yaml`` against a plain script.

Both run in this process, one after the other. The plain script (the baseline) does the work of the run
with no orchestration: it reads data/activity.csv with the ``file`` data technique (no DVC), makes the
same 5 group folds, trains the same GRU for the same 8 epochs with ``train_single`` (seeded as the
strategy seeds it, so the fold scores match the run's) and scores each fold's valid rows with the same
TTA and metrics; no Prefect, no MLflow, no plots, no files. The orchestrated run is the CLI's own
``run_cli(["run", CONFIG, "--force"])``, with MLflow in a temporary SQLite store and a Prefect server
of its own, timed part by part by wrapping the functions that do each part:

* imports: ``python -c 'import ...'`` in a child process, of what each side imports;
* Prefect server start: ``flows.prefect_server.temporary_api`` up to its server being healthy;
* data load and folds: ``fold_task.dataset_for`` and ``folds_for`` (DVC read, folds, leakage guards);
* training and evaluation: ``fold_task.run_job`` less the data above;
* logging and plots: the MLflow tracker's hooks (their time in the flow's thread; ``run_end`` waits for
  the tracker's background writes and draws the plots) and the flow's fold timeline plot;
* the rest: the run's time less the parts above (config, Prefect flow and task runs, results).

Each part is given in wall seconds and in CPU seconds (this process's threads and its ended children).

Run from the repository (``scribbles data build`` first, or this script builds the demo data)::

    python bench/overhead.py
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/activity.yaml"
PLAIN_IMPORTS = ("import torch, pandas, scribbles.plugins.data, scribbles.plugins.splitters, "
                 "scribbles.plugins.models.baseline, scribbles.plugins.losses, scribbles.plugins.tta, "
                 "scribbles.plugins.metrics; from scribbles.core.training import train_single; "
                 "from scribbles.core.evaluation import evaluate; from scribbles.core.data import fold_inputs")
RUN_IMPORTS = "import scribbles.flows.cli, scribbles.flows.experiment, scribbles.plugins.trackers.mlflow_tracker"


Clock = tuple[float, float]  # (wall seconds, CPU seconds)


def now() -> Clock:
    """Wall time, and the CPU time of this process (every thread) and of its children that have ended.

    CPU time is what to compare on a shared machine: other processes' load stretches the wall time of
    both sides, not their CPU time (training runs torch on one thread on both sides).
    """
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), time.process_time() + children.ru_utime + children.ru_stime


def since(start: Clock) -> Clock:
    end = now()
    return end[0] - start[0], end[1] - start[1]


def child_seconds(code: str) -> Clock:
    started = now()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    return since(started)


def plain() -> dict[str, Clock]:
    """The baseline: the run's work with no orchestration; returns the (wall, CPU) seconds of its parts."""
    from scribbles.core import TrainConfig, create, load_config
    from scribbles.core.data import fold_inputs, targets
    from scribbles.core.evaluation import evaluate_groups, tta_groups, tta_metrics
    from scribbles.core.training import seed_everything, train_single

    config = load_config(str(REPO / CONFIG))
    data = {k: v for k, v in dict(config.data).items() if v is not None}
    data.pop("name")
    started = now()
    dataset = create("data", "file", **{**data, "path": str(REPO / data["path"])}).load()
    folds = list(create("splitter", "group_kfold", n_splits=5).split(dataset))
    loaded = since(started)
    training = now()
    train_config = TrainConfig(epochs=8, batch_size=64, lr=3.0e-3, seed=0)
    tta = tta_groups([create("tta", "time_shift", shifts=[-2, 2])])
    metrics = [create("metric", "accuracy"), create("metric", "f1_macro")]
    scores = []
    for fold in folds:
        inputs = fold_inputs([], dataset, fold.train, fold.valid, "classification")
        seed_everything(train_config.seed)  # as the strategy does before it builds the model
        model = create("model", "gru", hidden=48).build(inputs.spec)
        loss = create("loss", "cross_entropy").build(inputs.spec)
        result = train_single(model, loss, inputs.train, inputs.valid, train_config)
        probs = evaluate_groups(result.model, inputs.valid[0], tta, "mean", train_config.batch_size * 4,
                                class_dim=-1)
        found = tta_metrics(metrics, targets(dataset, fold.valid, "classification"), probs, result.model,
                            inputs.valid[0])
        scores.append(found["accuracy"])
    print(f"plain accuracy by fold: {', '.join(f'{s:.3f}' for s in scores)}")
    return {"data load and folds": loaded, "training and evaluation": since(training)}


class Timers:
    """(wall, CPU) seconds spent in wrapped functions, by part (a context manager's up to its ``yield``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, Clock] = {}

    def add(self, part: str, spent: Clock) -> None:
        wall, cpu = self.seconds.get(part, (0.0, 0.0))
        self.seconds[part] = wall + spent[0], cpu + spent[1]

    def wrap(self, owner: object, name: str, part: str) -> None:
        inner = getattr(owner, name)

        @functools.wraps(inner)
        def timed(*args: object, **kwargs: object) -> object:
            started = now()
            try:
                return inner(*args, **kwargs)
            finally:
                self.add(part, since(started))

        setattr(owner, name, timed)

    def wrap_entered(self, owner: object, name: str, part: str) -> None:
        inner = getattr(owner, name)

        @functools.wraps(inner)
        @contextlib.contextmanager
        def timed(*args: object, **kwargs: object) -> Iterator[object]:
            started = now()
            with inner(*args, **kwargs) as value:
                self.add(part, since(started))
                yield value

        setattr(owner, name, timed)


def orchestrated(tmp: Path) -> dict[str, Clock]:
    """``scribbles run CONFIG --force`` in this process, timed by part; returns the seconds of each part."""
    from scribbles.flows import fold_task, prefect_server, runs
    from scribbles.flows.cli import run_cli
    from scribbles.plugins.trackers.mlflow_tracker import MlflowTracker

    timers = Timers()
    timers.wrap_entered(prefect_server, "temporary_api", "Prefect server start")
    timers.wrap(fold_task, "dataset_for", "data load and folds")
    timers.wrap(fold_task, "folds_for", "data load and folds")
    timers.wrap(runs, "run_job", "fold tasks")
    for hook in ("scribbles_run_start", "scribbles_fold_start", "scribbles_epoch_end", "scribbles_fold_end",
                 "scribbles_run_end"):
        timers.wrap(MlflowTracker, hook, "logging and plots")
    from scribbles.flows import plots

    timers.wrap(plots, "fold_timeline", "logging and plots")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
    os.environ.pop("PREFECT_API_URL", None)
    started = now()
    code = run_cli(["run", CONFIG, "--force"])
    total = since(started)  # the Prefect server, a child, has ended: its CPU time is in
    if code != 0:
        sys.exit(f"scribbles run failed with exit code {code}")
    parts = dict(timers.seconds)
    folds, data = parts.pop("fold tasks", (0.0, 0.0)), parts.get("data load and folds", (0.0, 0.0))
    parts["training and evaluation"] = folds[0] - data[0], folds[1] - data[1]
    parts["total"] = total
    return parts


def _minus(total: Clock, parts: list[Clock]) -> Clock:
    return total[0] - sum(p[0] for p in parts), total[1] - sum(p[1] for p in parts)


def main() -> None:
    os.chdir(REPO)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not (REPO / "data" / "activity.csv").exists():
        subprocess.run([str(Path(sys.executable).with_name("scribbles")), "data", "build"], check=True, cwd=REPO)
    imports_plain, imports_run = child_seconds(PLAIN_IMPORTS), child_seconds(RUN_IMPORTS)
    exec(PLAIN_IMPORTS)  # counted once, above, in a fresh process
    started = now()
    plain_parts = {"imports": imports_plain, **plain()}
    total_plain = _minus(since(started), [(-imports_plain[0], -imports_plain[1])])
    with tempfile.TemporaryDirectory() as folder:
        found = orchestrated(Path(folder))
    total_run = _minus(found.pop("total"), [(-imports_run[0], -imports_run[1])])
    zero = (0.0, 0.0)
    run_parts = {"imports": imports_run, "Prefect server start": found.get("Prefect server start", zero),
                 "data load and folds": found.get("data load and folds", zero),
                 "training and evaluation": found["training and evaluation"],
                 "logging and plots": found.get("logging and plots", zero)}
    run_parts["the rest (Prefect flow and tasks, config, results)"] = _minus(total_run, list(run_parts.values()))
    print(f"\n{'part':<52} {'plain wall':>10} {'run wall':>9} {'plain CPU':>10} {'run CPU':>8}")
    for name, (wall, cpu) in run_parts.items():
        base = plain_parts.get(name, zero)
        print(f"{name:<52} {base[0]:>10.1f} {wall:>9.1f} {base[1]:>10.1f} {cpu:>8.1f}")
    print(f"{'total':<52} {total_plain[0]:>10.1f} {total_run[0]:>9.1f} {total_plain[1]:>10.1f} {total_run[1]:>8.1f}")
    print(f"\nscribbles run / plain script: {total_run[0] / total_plain[0]:.2f}x wall, "
          f"{total_run[1] / total_plain[1]:.2f}x CPU (goal: at most 1.15x; on a shared machine trust CPU)")


if __name__ == "__main__":
    main()
