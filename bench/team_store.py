"""8 concurrent 2-fold `scribbles run`s recording to MLflow on PostgreSQL (a real `mlflow server`) against the
same 8 on one SQLite file, with the same Prefect server (on PostgreSQL) for both.

Prints each store's wall time, the ratio server / SQLite, and the metric values the runs wrote (their
fold_result.json records) against those read back. Needs PostgreSQL (initdb/pg_ctl); run:
    .venv/bin/python bench/team_store.py
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient
from scribbles.flows.demo_data import build_activity, write_csv
from scribbles.testing.team import metric_counts, mlflow_server, postgres, prefect_server

SCRIBBLES = str(Path(sys.executable).with_name("scribbles"))
CONFIG = {"experiment": "bench", "data": {"name": "dvc", "path": "data/activity.csv", "target": "activity",
                                          "group": "subject", "time": "timestamp"},
          "split": {"name": "group_kfold", "n_splits": 2}, "model": {"name": "mlp", "hidden": [8]},
          "train": {"epochs": 2, "batch_size": 64, "lr": 0.003}}
RATES = [f"0.00{i}" for i in range(1, 9)]


def project(root: Path) -> Path:
    root.mkdir()
    run = lambda *a: subprocess.run(a, cwd=root, check=True, capture_output=True)  # noqa: E731
    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    (root / "data").mkdir()
    write_csv(build_activity().iloc[::12].reset_index(drop=True), root / "data" / "activity.csv")
    run(sys.executable, "-m", "dvc", "add", "-q", "data")
    (root / "bench.yaml").write_text(yaml.safe_dump(CONFIG))
    run("git", "add", "-A")
    run("git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "bench")
    return root


def eight(root: Path, tracking: str, prefect: str) -> tuple[float, int, int, int]:
    """Seconds for 8 concurrent runs, failures, metric values written and read back."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "PREFECT_API_URL": prefect,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    start = time.perf_counter()
    procs = [subprocess.Popen([SCRIBBLES, "run", "bench.yaml", "--set", f"train.lr={lr}", "--force"], cwd=root,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for lr in RATES]
    errors = [p.communicate()[1] for p in procs]
    seconds = time.perf_counter() - start
    failed = sum(p.returncode != 0 for p in procs)
    for err in errors:
        if err.strip():
            print("  stderr:", err.strip().splitlines()[-1][:200])
    client = MlflowClient(tracking)
    exp = client.get_experiment_by_name("bench")
    parents = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" not in r.data.tags]
    written = read = 0
    for parent in parents:
        w, r = metric_counts(client, parent)
        written, read = written + w, read + r
    return seconds, failed, written, read


def main() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # reading fold_result.json back
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        pg = stack.enter_context(postgres(root / "pg"))
        prefect = stack.enter_context(prefect_server(pg.url("prefect", "asyncpg"), root / "ph", root / "p.log"))
        server = stack.enter_context(mlflow_server(pg.url("mlflow"), root / "art", root / "m.log"))
        proj = project(root / "proj")
        sqlite_s, sqlite_failed, sqlite_w, sqlite_r = eight(proj, f"sqlite:///{root / 'bench.db'}", prefect)
        print(f"SQLite (baseline): 8 concurrent 2-fold runs {sqlite_s:.1f} s, {sqlite_failed} failed, "
              f"metric values written {sqlite_w}, read back {sqlite_r}")
        server_s, server_failed, server_w, server_r = eight(proj, server, prefect)
        print(f"MLflow server on PostgreSQL: {server_s:.1f} s, {server_failed} failed, "
              f"metric values written {server_w}, read back {server_r}")
        print(f"ratio server / SQLite wall time: {server_s / sqlite_s:.2f}")


if __name__ == "__main__":
    main()
