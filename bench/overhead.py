"""What orchestration costs on one whole run: ``scribbles run configs/activity.yaml`` against a plain script.

The plain script (the baseline, run in this process) does the work of the run with no orchestration:
it reads data/activity.csv with the ``file`` data technique (no DVC), makes the same 5 group folds,
trains the same GRU for the same 8 epochs with ``train_single`` and scores each fold's valid rows with
the same TTA and metrics; no Prefect, no MLflow, no plots, no files. The orchestrated run is the CLI
itself, in a child process, with MLflow in a temporary SQLite store.

Parts (seconds; "measured" ones are timed here, the remainder is derived):

* imports: ``python -c 'import ...'`` in a child process, of what each side imports;
* Prefect server start: ``flows.prefect_server.temporary_api`` started and stopped here;
* data load and folds: the plain side's load and split, against ``fold_task.prepare`` (resolve, DVC
  read, folds, leakage guards) for the run;
* training and evaluation: the plain side's folds (the run trains the same folds the same way);
* logging, plots and the rest: the run's wall time less the parts above.

Run from the repository (``scribbles data build`` first, or this script builds the demo data)::

    python bench/overhead.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/activity.yaml"
PLAIN_IMPORTS = ("import torch, pandas, scribbles.core.loop, scribbles.core.evaluation, "
                 "scribbles.core.fold_inputs, scribbles.plugins.data, scribbles.plugins.splitters, "
                 "scribbles.plugins.models.baseline, scribbles.plugins.losses, scribbles.plugins.tta, "
                 "scribbles.plugins.metrics")
RUN_IMPORTS = "import scribbles.flows.cli, scribbles.flows.experiment, scribbles.plugins.trackers.mlflow_tracker"


def child_seconds(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    return time.perf_counter() - started


def plain() -> dict[str, float]:
    """The baseline: the run's work with no orchestration; returns the seconds of its parts."""
    from scribbles.core import TrainConfig, create, load_config
    from scribbles.core.evaluation import evaluate_groups, tta_groups, tta_metrics
    from scribbles.core.fold_inputs import fold_inputs, targets
    from scribbles.core.loop import train_single
    from scribbles.core.training import seed_everything

    config = load_config(str(REPO / CONFIG))
    data = {k: v for k, v in dict(config.data).items() if v is not None}
    data.pop("name")
    started = time.perf_counter()
    dataset = create("data", "file", **{**data, "path": str(REPO / data["path"])}).load()
    folds = list(create("splitter", "group_kfold", n_splits=5).split(dataset))
    loaded = time.perf_counter()
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
    trained = time.perf_counter()
    print(f"plain accuracy by fold: {', '.join(f'{s:.3f}' for s in scores)}")
    return {"data load and folds": loaded - started, "training and evaluation": trained - loaded}


def prefect_start() -> float:
    from scribbles.flows.prefect_env import configure_prefect
    from scribbles.flows.prefect_server import temporary_api

    configure_prefect()
    os.environ.pop("PREFECT_API_URL", None)
    started = time.perf_counter()
    with temporary_api():
        up = time.perf_counter() - started
    return up


def prepare_run() -> float:
    from scribbles.core import load_config
    from scribbles.flows import fold_task

    config = load_config(CONFIG).model_dump(mode="json")
    started = time.perf_counter()
    fold_task.prepare(config, False)
    seconds = time.perf_counter() - started
    fold_task.forget()
    return seconds


def orchestrated(tmp: Path) -> float:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "PREFECT_API_URL": ""}
    env.pop("PREFECT_API_URL")
    started = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).with_name("scribbles")), "run", CONFIG, "--force"], cwd=REPO,
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"scribbles run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    print("\n".join(line for line in done.stdout.splitlines() if "mean" in line or "accuracy" in line)[:2000])
    return seconds


def main() -> None:
    os.chdir(REPO)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not (REPO / "data" / "activity.csv").exists():
        subprocess.run([str(Path(sys.executable).with_name("scribbles")), "data", "build"], check=True, cwd=REPO)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        total_run = orchestrated(tmp)
        imports_plain, imports_run = child_seconds(PLAIN_IMPORTS), child_seconds(RUN_IMPORTS)
        server = prefect_start()
        prepare = prepare_run()
        started = time.perf_counter()
        parts = plain()
        total_plain = imports_plain + time.perf_counter() - started
    run_parts = {"imports": imports_run, "Prefect server start": server, "data load and folds": prepare,
                 "training and evaluation": parts["training and evaluation"]}
    run_parts["logging, plots and the rest (derived)"] = total_run - sum(run_parts.values())
    plain_parts = {"imports": imports_plain, **parts}
    print(f"\n{'part':<40} {'plain s':>8} {'run s':>8}")
    for name in run_parts:
        print(f"{name:<40} {plain_parts.get(name, 0.0):>8.1f} {run_parts[name]:>8.1f}")
    print(f"{'total (wall)':<40} {total_plain:>8.1f} {total_run:>8.1f}")
    print(f"\nscribbles run / plain script: {total_run / total_plain:.2f}x (goal: at most 1.15x)")


if __name__ == "__main__":
    main()
