"""What orchestration costs on one whole run: ``scribbles run configs/activity.yaml`` against a plain script.

Each side runs in a process of its own, as a user runs it, and is timed from its start to its exit
(imports, the interpreter's exit and every child process included): the wall seconds the user waits,
and the CPU seconds of the process and its children. The plain script (the baseline) does the work of
the run with no orchestration: it reads data/activity.csv with the ``file`` data technique (no DVC),
makes the same 5 group folds, standardises each fold's inputs as the run does (its default
preprocessing: scikit-learn's StandardScaler fitted on the fold's train rows), trains the same GRU for
the same 8 epochs with ``train_single`` (seeded as the strategy seeds it) and scores each fold's valid
rows with the same TTA and metrics; no Prefect, no MLflow, no plots, no files. Both sides must score
every fold the same (checked after each pair: else the baseline is not the run's work and the script
stops). The orchestrated run is the CLI's own entry point (``scribbles run CONFIG
--force``), with a temporary Prefect server of its own and MLflow in a SQLite store: by default a new one
(a project's first run: the store is made, as a copy of the empty tables MLflow made once on this
machine, see README), with ``--store kept`` one that an untimed run made first (every later run).
Inside each process the parts are timed by wrapping the functions that do them (patched as their modules
load, so the import order is the CLI's):

* imports, config and checks: from the process's start to its first data read (the CLI: to the end
  of ``checked_config``: config, plugins, DVC data check, preflight);
* Prefect server start: ``temporary_api`` up to its server being healthy; the warm-up (the flow's
  imports, each technique's ``prepare``: MLflow's import and store, torch's lazy imports) runs in that
  time, beside the server's own start, and the wait for the server after it is shown apart;
* data load and folds: ``fold_task.dataset_for`` and ``folds_for``;
* training and evaluation: ``runs.run_job`` less the data above; with a fold worker (flows/fold_worker.py,
  which trains beside the flow from the run's start), the flow's wait for its results;
* logging and plots: the MLflow tracker's hooks (their time in the flow's thread; ``run_end`` waits for
  the tracker's background writes and draws the plots) and the flow's fold timeline plot;
* Prefect server stop: ``temporary_api`` after its block;
* the rest: the process's time less the parts above (Prefect flow and task runs, results, exit).

CPU seconds of a part are the process's own (every thread); the child processes that run beside it (the
fold worker, the Prefect server, the few git and DVC commands the run starts) have a CPU line of their own.

Run from the repository (``scribbles data build`` first, or this script builds the demo data)::

    python bench/overhead.py               # one of each
    python bench/overhead.py --repeat 3    # three of each, alternating; the median of each figure
    python bench/overhead.py --set train.epochs=40   # a longer run: what orchestration adds per epoch
    python bench/overhead.py --store kept  # the run writes to a store that exists (a project's later runs)

What orchestration adds is mostly a fixed cost (the imports of Prefect and MLflow, the temporary
server's start, the store's preparation) and a little per fold; two lengths of run tell them apart.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.abc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

STARTED = time.perf_counter(), time.process_time()  # a child's clock starts here, before its imports
REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/activity.yaml"
Clock = tuple[float, float]  # (wall seconds, CPU seconds)
SERVER_CPU = "child processes (fold worker, Prefect server, git, DVC)"
REST = "the rest (Prefect flow and tasks, results, exit)"
IMPORTS = "imports, config and checks"
#: The accuracy of each fold, as the side in this (child) process scored it: both sides train the same
#: model on the same folds with the same seeds, so they must agree (checked after each pair).
SCORES: list[float] = []
ROWS = (IMPORTS, "Prefect server start", "data load and folds", "training and evaluation",
        "logging and plots", "Prefect server stop", REST)


def now() -> Clock:
    """Wall time, and the CPU time of this process (every thread; children apart)."""
    return time.perf_counter(), time.process_time()


def since(start: Clock) -> Clock:
    end = now()
    return end[0] - start[0], end[1] - start[1]


def children_cpu() -> float:
    """CPU seconds of this process's children that have ended (and of their own ended children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def plain(sets: list[str]) -> dict[str, Clock]:
    """The baseline, in its own process: the run's work with no orchestration (the config with ``sets``, as
    ``--set`` gives them to the run); the (wall, CPU) seconds of its parts."""
    import pandas  # noqa: F401
    import torch  # noqa: F401
    from scribbles.core import TrainConfig, create, load_config
    from scribbles.core.data import DEFAULT_STEPS, fold_inputs, targets
    from scribbles.core.evaluation import evaluate_groups, tta_groups, tta_metrics
    from scribbles.core.training import seed_everything, train_single

    config = load_config(str(REPO / CONFIG), sets)
    data = {k: v for k, v in dict(config.data).items() if v is not None}
    imported = since(STARTED)
    data.pop("name")
    started = now()
    dataset = create("data", "file", **{**data, "path": str(REPO / data["path"])}).load()
    folds = list(create("splitter", "group_kfold", n_splits=5).split(dataset))
    loaded = since(started)
    training = now()
    # The run's preprocessing (none given: scribbles' default, per-channel standardisation with
    # scikit-learn's StandardScaler fitted on each fold's train rows), as a plain script would write it.
    steps = [dict(step) if isinstance(step, dict) else {"name": step}
             for step in (DEFAULT_STEPS if config.preprocess is None else config.preprocess)]
    preprocess = [create("preprocess", step.pop("name"), **step) for step in steps]
    train = config.train
    train_config = TrainConfig(epochs=train.epochs, batch_size=train.batch_size, lr=train.lr, seed=train.seed)
    tta = tta_groups([create("tta", "time_shift", shifts=[-2, 2])])
    metrics = [create("metric", "accuracy"), create("metric", "f1_macro")]
    scores = []
    for fold in folds:
        inputs = fold_inputs(preprocess, dataset, fold.train, fold.valid, "classification")
        seed_everything(train_config.seed)  # as the strategy does before it builds the model
        model = create("model", "gru", hidden=48).build(inputs.spec)
        loss = create("loss", "cross_entropy").build(inputs.spec)
        result = train_single(model, loss, inputs.train, inputs.valid, train_config)
        probs = evaluate_groups(result.model, inputs.valid[0], tta, "mean", train_config.batch_size * 4,
                                class_dim=-1)
        found = tta_metrics(metrics, targets(dataset, fold.valid, "classification"), probs, result.model,
                            inputs.valid[0])
        scores.append(found["accuracy"])
    SCORES.extend(scores)
    return {IMPORTS: imported, "data load and folds": loaded, "training and evaluation": since(training)}


class Timers:
    """(wall, CPU) seconds spent in wrapped functions, by part (a context manager's before and after its ``yield``)."""

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

    def wrap_entered(self, owner: object, name: str, entering: str, leaving: str) -> None:
        inner = getattr(owner, name)

        @functools.wraps(inner)
        @contextlib.contextmanager
        def timed(*args: object, **kwargs: object) -> Iterator[object]:
            started = now()
            with inner(*args, **kwargs) as value:
                self.add(entering, since(started))
                try:
                    yield value
                finally:
                    started = now()
            self.add(leaving, since(started))

        setattr(owner, name, timed)


class Patcher(importlib.abc.MetaPathFinder):
    """Calls ``patches[name](module)`` right after module ``name`` is first executed (a post-import hook),
    so that timers go in without importing anything before the CLI does."""

    def __init__(self, patches: dict[str, Callable[[ModuleType], None]]) -> None:
        self.patches = patches

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in self.patches:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader, patch = spec.loader, self.patches.pop(name)
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            patch(module)

        loader.exec_module = exec_module
        return spec


def orchestrated(sets: list[str]) -> dict[str, Clock]:
    """``scribbles run CONFIG --force`` (with ``--set`` of each of ``sets``) in this process, timed by part;
    the seconds of each part."""
    timers = Timers()
    checked: list[Clock] = []

    def command(module: ModuleType) -> None:
        inner = module.checked_config

        @functools.wraps(inner)
        def timed(*args: object, **kwargs: object) -> object:
            try:
                return inner(*args, **kwargs)
            finally:
                checked.append(since(STARTED))  # from the process's start: imports, config and checks

        module.checked_config = timed
        shown = module.print_results

        @functools.wraps(shown)
        def scored(out: object, result: dict[str, Any]) -> None:
            SCORES.extend(fold["accuracy"] for fold in result["folds"])
            shown(out, result)

        module.print_results = scored
        if hasattr(module, "warm_up"):  # the CLI before the warm-up beside the server's start has none
            timers.wrap(module, "warm_up", "warm-up")

    def tracker(module: ModuleType) -> None:
        for hook in ("scribbles_run_start", "scribbles_fold_start", "scribbles_epoch_end", "scribbles_fold_end",
                     "scribbles_run_end"):
            timers.wrap(module.MlflowTracker, hook, "logging and plots")

    sys.meta_path.insert(0, Patcher({
        "scribbles.flows.commands.run": command,
        "scribbles.flows.prefect_server": lambda m: (
            timers.wrap_entered(m, "temporary_api", "Prefect server start", "Prefect server stop"),
            timers.wrap(m, "_wait_healthy", "server wait")),
        "scribbles.flows.fold_task": lambda m: [timers.wrap(m, f, "data load and folds")
                                                for f in ("dataset_for", "folds_for")],
        "scribbles.flows.runs": lambda m: timers.wrap(m, "run_job", "fold tasks"),
        # With a fold worker (flows/fold_worker.py) the flow waits for its results instead of training.
        "scribbles.flows.fold_worker": lambda m: timers.wrap(m, "result_for", "fold tasks"),
        "scribbles.flows.plots": lambda m: timers.wrap(m, "fold_timeline", "logging and plots"),
        "scribbles.plugins.trackers.mlflow_tracker": tracker,
    }))
    from scribbles.flows.cli import main

    sys.argv = ["scribbles", "run", CONFIG, "--force", *[arg for item in sets for arg in ("--set", item)]]
    try:
        main()  # the installed command's own entry point: its exit (the rest of this process) is the user's
    except SystemExit as exc:
        if exc.code:
            raise
    parts = dict(timers.seconds)
    folds, data = parts.pop("fold tasks", (0.0, 0.0)), parts.get("data load and folds", (0.0, 0.0))
    parts["training and evaluation"] = folds[0] - data[0], folds[1] - data[1]
    parts[IMPORTS] = checked[0]
    parts[SERVER_CPU] = 0.0, children_cpu()
    return parts


def in_child(side: str, sets: list[str], store: Path | None = None) -> tuple[dict[str, Clock], list[float]]:
    """Run ``side`` (plain or run) in a process of its own; its parts (its total as ``total``) and the
    accuracy of each fold.

    ``store``: the MLflow store the run writes to; None for a new one in a temporary folder.
    """
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    with tempfile.TemporaryDirectory() as folder:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{store or Path(folder) / 'mlflow.db'}"
        out = Path(folder) / "parts.json"
        wall, cpu = time.perf_counter(), children_cpu()
        subprocess.run([sys.executable, __file__, "--side", side, "--out", str(out),
                        *[arg for item in sets for arg in ("--set", item)]], check=True, cwd=REPO, env=env)
        total = time.perf_counter() - wall, children_cpu() - cpu
        written = json.loads(out.read_text())
    parts = {name: tuple(value) for name, value in written["parts"].items()}
    parts["total"] = total
    return parts, written["scores"]  # type: ignore[return-value]


def table(plain_parts: dict[str, Clock], run_parts: dict[str, Clock]) -> str:
    zero = (0.0, 0.0)
    rows = {name: run_parts.get(name, zero) for name in ROWS if name != REST}
    counted = [*rows.values(), run_parts.get(SERVER_CPU, zero)]
    total = run_parts["total"]
    rows[REST] = total[0] - sum(p[0] for p in counted), total[1] - sum(p[1] for p in counted)
    base_total = plain_parts["total"]
    base = {name: plain_parts.get(name, zero) for name in ROWS}
    base[REST] = tuple(base_total[i] - sum(v[i] for k, v in base.items() if k != REST) for i in (0, 1))
    lines = [f"{'part':<56} {'plain wall':>10} {'run wall':>9} {'plain CPU':>10} {'run CPU':>8}"]
    for name, (wall, cpu) in rows.items():
        lines.append(f"{name:<56} {base[name][0]:>10.1f} {wall:>9.1f} {base[name][1]:>10.1f} {cpu:>8.1f}")
    lines.append(f"{SERVER_CPU:<56} {'':>10} {'':>9} {0.0:>10.1f} {run_parts.get(SERVER_CPU, zero)[1]:>8.1f}")
    lines.append(f"{'total':<56} {base_total[0]:>10.1f} {total[0]:>9.1f} {base_total[1]:>10.1f} {total[1]:>8.1f}")
    if "warm-up" in run_parts:
        lines.append(f"(inside the server start: the warm-up, {run_parts['warm-up'][0]:.1f} s wall, "
                     f"{run_parts['warm-up'][1]:.1f} s CPU; then waiting for the server to answer, "
                     f"{run_parts.get('server wait', (0.0, 0.0))[0]:.1f} s: the longer of the two starts is the "
                     "one to shorten)")
    lines.append(f"\nscribbles run / plain script: {total[0] / base_total[0]:.2f}x wall, "
                 f"{total[1] / base_total[1]:.2f}x CPU (goal: at most 1.15x)")
    return "\n".join(lines)


def median(runs: list[dict[str, Clock]]) -> dict[str, Clock]:
    """The median of each part's wall and CPU seconds over ``runs``."""
    names = {name for run in runs for name in run}
    return {name: (statistics.median(r.get(name, (0.0, 0.0))[0] for r in runs),
                   statistics.median(r.get(name, (0.0, 0.0))[1] for r in runs)) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side, alternating; medians shown")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="change the config for both sides, e.g. train.epochs=40 (repeatable)")
    parser.add_argument("--store", choices=("new", "kept"), default="new",
                        help="the run's MLflow store: new (a project's first run: its tables are made) or kept "
                             "(one made by an untimed run first, then kept: every later run)")
    parser.add_argument("--side", choices=("plain", "run"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.chdir(REPO)
    if args.side:  # one side, in this (child) process
        parts = plain(args.set) if args.side == "plain" else orchestrated(args.set)
        Path(args.out).write_text(json.dumps({"parts": parts, "scores": SCORES}))
        return
    if not (REPO / "data" / "activity.csv").exists():
        subprocess.run([str(Path(sys.executable).with_name("scribbles")), "data", "build"], check=True, cwd=REPO)
    plains, runs = [], []
    with tempfile.TemporaryDirectory() as kept:
        store = None
        if args.store == "kept":  # made by an untimed run first: a project's store after its first run
            store = Path(kept) / "mlflow.db"
            in_child("run", [*args.set, "train.epochs=1"], store)
        for number in range(args.repeat):
            base, base_scores = in_child("plain", args.set)
            run, run_scores = in_child("run", args.set, store)
            plains.append(base)
            runs.append(run)
            same = len(base_scores) == len(run_scores) and all(
                abs(a - b) < 1e-9 for a, b in zip(base_scores, run_scores, strict=True))
            print(f"accuracy by fold, plain: {', '.join(f'{s:.4f}' for s in base_scores)}; run: "
                  f"{', '.join(f'{s:.4f}' for s in run_scores)}", flush=True)
            if not same:  # then the baseline does not do the run's work, and the ratio means nothing
                sys.exit("the plain script and the run scored differently: the baseline is not the run's work")
            if args.repeat > 1:
                print(f"\nrun {number + 1} of {args.repeat}:\n{table(plains[-1], runs[-1])}", flush=True)
    title = f"median of {args.repeat} runs of each" if args.repeat > 1 else "one run of each"
    title += f" ({', '.join(args.set)})" if args.set else ""
    print(f"\n{title}:\n{table(median(plains), median(runs))}")
    if args.repeat > 1:
        # Each run against the plain script just before it: a machine whose speed drifts (a shared host)
        # moves both alike, so the median of these ratios is steadier than the ratio of the medians.
        ratios = [run["total"][0] / base["total"][0] for base, run in zip(plains, runs, strict=True)]
        print(f"each run / the plain script before it: {', '.join(f'{r:.2f}x' for r in ratios)}; "
              f"median {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
