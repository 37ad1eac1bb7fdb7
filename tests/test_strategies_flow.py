"""The experiment flow with a distributed strategy: one MLflow run per fold whatever the world size."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_dvc_project, run_cli, work_in
from mlflow.tracking import MlflowClient
from scribbles.core import load_config
from scribbles.flows.experiment import experiment

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture
def project(tmp_path: Path, digits_small, monkeypatch: pytest.MonkeyPatch, prefect_api: str) -> Path:
    root = make_dvc_project(tmp_path / "proj", {"digits.csv": digits_small})
    return work_in(root, monkeypatch)


def test_ddp_flow_tracks_each_fold_once(project: Path) -> None:
    """ddp with 2 workers: two fold runs, each epoch logged once (rank 0 only), checkpoints cleaned up."""
    # The MLP learns the 8x8 digits in a few epochs (the config's cnn with shifted training needs more).
    overrides = ["model={name: mlp, hidden: [64]}", "train.lr=1.0e-2", "train.strategy=ddp", "train.workers=2",
                 "train.epochs=4", "train.batch_size=32",
                 "split.n_splits=2", "experiment=digits-ddp"]
    result = experiment(load_config(CONFIGS / "digits.yaml", overrides).model_dump(mode="json"))
    assert result["summary"]["accuracy_mean"] > 0.3  # ten classes: chance is 0.1
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("digits-ddp").experiment_id
    runs = client.search_runs([experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    folds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(folds) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert parent.data.tags["scribbles.strategy"] == "ddp"
    for fold in folds:
        history = client.get_metric_history(fold.info.run_id, "train_loss")
        assert sorted(m.step for m in history) == [0, 1, 2, 3]
    assert not list((project / ".scribbles" / "checkpoints").glob("*"))


def test_cli_refuses_more_workers_than_batch_rows(project: Path) -> None:
    """Bad input from the command line: exit 2, one line naming the field, no traceback."""
    done = run_cli("run", str(CONFIGS / "digits.yaml"), "--set", "train.strategy=fsdp", "--set",
                   "train.workers=64", "--set", "train.batch_size=32", cwd=project)
    assert done.returncode == 2
    assert "train.workers" in done.stderr and "Traceback" not in done.stderr
