"""The fold worker (flows/fold_worker.py): `scribbles run` trains its folds in a process of its own, started
with the command, and the flow takes their results from it.

Through the installed CLI on real DVC projects and a real MLflow store: the same table and the same
per-epoch curves as training in the command's process; a second run reuses every fold (the worker is
told to skip them); a worker that dies mid-run costs nothing but time (its folds train in the command's
process); a plugin's error in training is the same one line with a worker as without; no worker
process outlives its command.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import SCRIBBLES, fake_dist, make_dvc_project, run_cli
from mlflow.tracking import MlflowClient

CONFIG = """\
experiment: worker
data: {name: dvc, path: data/activity.csv, target: activity, group: subject, time: timestamp,
       kind: sequence, shape: [32, 3]}
split: {name: group_kfold, n_splits: 3}
model: {name: gru, hidden: 8}
train: {epochs: 3, batch_size: 64, lr: 3.0e-3, seed: 0}
evaluate: {tta: {transforms: [{name: time_shift, shifts: [-1, 1]}], merge: mean}, metrics: [accuracy, f1_macro]}
tracking: {name: mlflow}
"""


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory, activity_small: Any) -> dict[str, Path]:
    """Two identical projects (the small activity set, the config above): one per way of training."""
    made = {}
    for name in ("worker", "inline"):
        root = make_dvc_project(tmp_path_factory.mktemp(name), {"activity.csv": activity_small})
        (root / "run.yaml").write_text(CONFIG)
        made[name] = root
    return made


def run(root: Path, api: str, worker: str, *more: str, env: dict[str, str] | None = None) -> Any:
    return run_cli("run", "run.yaml", *more, cwd=root, env={
        "PREFECT_API_URL": api, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "SCRIBBLES_FOLD_WORKER": worker, **(env or {})})


def curves(root: Path) -> dict[str, list[tuple[int, float]]]:
    """Each fold run's valid_loss history (step, value) and its final metrics, by fold."""
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("worker")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert "RUNNING" not in {r.info.status for r in runs}
    out = {}
    for r in runs:
        fold = r.data.tags.get("scribbles.fold")
        if fold is not None:
            history = client.get_metric_history(r.info.run_id, "valid_loss")
            out[fold] = [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] + sorted(
                (k, v) for k, v in r.data.metrics.items() if k.startswith(("accuracy", "f1_macro")))
    return out


def table(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("│")]


def test_a_run_trained_by_its_worker_records_what_the_command_s_process_would(
    projects: dict[str, Path], prefect_api: str
) -> None:
    """Same table, same final metrics and the same per-epoch valid_loss curve (every epoch logged) for
    each fold; then the worker's project runs again and reuses every fold (and a dead command's worker
    folder is removed)."""
    worker = run(projects["worker"], prefect_api, "1")
    inline = run(projects["inline"], prefect_api, "0")
    for result in (worker, inline):
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert "Traceback" not in result.stderr, result.stderr
    assert table(worker.stdout) == table(inline.stdout) and len(table(worker.stdout)) >= 5
    trained, reference = curves(projects["worker"]), curves(projects["inline"])
    assert set(trained) == {"0", "1", "2"} and trained == reference
    assert all(len([p for p in points if isinstance(p[0], int)]) == 3 for points in trained.values())

    # A folder left by a worker whose command was killed (SIGKILL: nothing could remove it) goes with the next worker.
    orphan = Path(tempfile.gettempdir()) / "scribbles-fold-worker-2147483000-test"
    (orphan / "out").mkdir(parents=True, exist_ok=True)
    again = run(projects["worker"], prefect_api, "1")
    assert again.returncode == 0, again.stderr[-2000:]
    assert not orphan.exists()
    assert sum(f"fold {i} reused" in again.stdout for i in range(3)) == 3, again.stdout
    assert table(again.stdout) == table(worker.stdout)


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def worker_of(pid: int, timeout: float = 60.0) -> int:
    """The fold worker process of the command ``pid``, once it has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children(pid):
            with_args = Path(f"/proc/{child}/cmdline").read_bytes() if Path(f"/proc/{child}").exists() else b""
            if b"scribbles.flows.fold_worker" in with_args:
                return child
        time.sleep(0.05)
    raise AssertionError("no fold worker started")


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads /proc")
def test_a_worker_that_dies_costs_only_time_and_none_outlives_its_command(
    tmp_path: Path, activity_small: Any, prefect_api: str, projects: dict[str, Path]
) -> None:
    """The worker is killed as soon as it starts: every fold trains in the command's process and the run
    ends as the worker's own would (the same table); a run stopped by SIGTERM leaves no worker behind
    and its runs KILLED."""
    root = make_dvc_project(tmp_path / "killed", {"activity.csv": activity_small})
    (root / "run.yaml").write_text(CONFIG)
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           "SCRIBBLES_FOLD_WORKER": "1"}
    command = subprocess.Popen([SCRIBBLES, "run", "run.yaml"], cwd=root, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    os.kill(worker_of(command.pid), 9)
    out, err = command.communicate(timeout=300)
    assert command.returncode == 0, out[-2000:] + err[-2000:]
    assert "Traceback" not in err, err
    reference = run(projects["inline"], prefect_api, "0", "--force")
    assert table(out) == table(reference.stdout)

    # Stopped mid-run: the worker goes with the command.
    command = subprocess.Popen([SCRIBBLES, "run", "run.yaml", "--force", "--set", "train.epochs=40"], cwd=root,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = worker_of(command.pid)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(client.search_runs(
            [client.get_experiment_by_name("worker").experiment_id], "attributes.status = 'RUNNING'")) < 2:
        time.sleep(0.2)  # the parent run and fold 0's are open: training is under way
    command.send_signal(15)
    out, err = command.communicate(timeout=120)
    assert command.returncode != 0 and "Traceback" not in err, err
    time.sleep(1.0)
    assert not Path(f"/proc/{worker}").exists() or "Z" in Path(f"/proc/{worker}/stat").read_text().split()[2]
    statuses = {r.info.status for r in client.search_runs([client.get_experiment_by_name("worker").experiment_id],
                                                        max_results=100)}
    assert "RUNNING" not in statuses and "KILLED" in statuses, statuses


def _model_plugin(name: str, forward_check: str) -> str:
    """A model plugin's source: model ``name``, a linear layer whose ``forward`` first runs ``forward_check``
    (one statement, indented for the method's body)."""
    return f'''
    import warnings

    import torch
    from pydantic import BaseModel
    from scribbles.core import Model, hookimpl

    class Net(torch.nn.Module):
        def __init__(self, inputs, classes):
            super().__init__()
            self.linear = torch.nn.Linear(inputs, classes)

        def forward(self, x):
{forward_check}
            return self.linear(x.flatten(1))

    class Technique(Model):
        """A linear model for the fold worker's tests."""
        name = "{name}"

        class Params(BaseModel):
            pass

        def build(self, spec):
            return Net(int(torch.tensor(spec.input_shape).prod()), spec.n_classes)

    @hookimpl
    def scribbles_techniques():
        return [Technique]
'''


# fails at its first validation, in fold 0, wherever it trains
BOOM = _model_plugin("boomer", """\
            if not self.training:
                raise RuntimeError("boom in forward")""")


def test_a_plugin_error_in_training_reads_the_same_with_a_worker_as_without(
    tmp_path: Path, activity_small: Any, prefect_api: str
) -> None:
    """The worker's error makes the command train that fold itself, where the plugin's error is the usual
    one line (exit 1, the plugin named, the parent run and fold 0's FAILED), word for word and run for run
    as without a worker."""
    site = tmp_path / "site"
    site.mkdir()
    fake_dist(site, "scribbles-boom", BOOM)
    lines: dict[str, Any] = {}
    for worker in ("1", "0"):
        root = make_dvc_project(tmp_path / f"boom{worker}", {"activity.csv": activity_small})
        (root / "run.yaml").write_text(CONFIG.replace("{name: gru, hidden: 8}", "{name: boomer}"))
        result = run(root, prefect_api, worker, env={"PYTHONPATH": str(site), "SCRIBBLES_DISABLE_PLUGIN_AUTOLOAD": "0"})
        assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
        err = result.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("failed: plugin scribbles-boom raised RuntimeError: boom in "
                                                   "forward"), result.stderr
        client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name("worker").experiment_id], max_results=100)
        statuses = sorted((r.data.tags.get("scribbles.fold", "parent"), r.info.status) for r in runs)
        assert ("parent", "FAILED") in statuses and "RUNNING" not in str(statuses), statuses
        lines[worker] = err[0], statuses
    assert lines["1"] == lines["0"]


# warns on every training batch: with a worker, in the worker's process alone
WARNER = _model_plugin("warner", """\
            if self.training:
                warnings.warn("warner: trained on a batch")""")


def test_a_plugin_warning_shows_once_with_a_worker_and_without(
    tmp_path: Path, activity_small: Any, prefect_api: str
) -> None:
    """A technique's warning raised on every training batch of every fold shows once in the command's
    output, whether the folds train in a worker (which sends it to the command) or in the command's
    process (where the libraries' ``catch_warnings`` blocks made Python show it again fold after fold, a
    number that varied from run to run)."""
    site = tmp_path / "site"
    site.mkdir()
    fake_dist(site, "scribbles-warner", WARNER)
    for worker in ("1", "0"):
        root = make_dvc_project(tmp_path / f"warn{worker}", {"activity.csv": activity_small})
        (root / "run.yaml").write_text(CONFIG.replace("{name: gru, hidden: 8}", "{name: warner}"))
        result = run(root, prefect_api, worker, env={"PYTHONPATH": str(site), "SCRIBBLES_DISABLE_PLUGIN_AUTOLOAD": "0"})
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert result.stderr.count("UserWarning: warner: trained on a batch") == 1, (worker, result.stderr)
        assert "scribbles_warner.py" in result.stderr  # where the plugin warned, as Python shows it
