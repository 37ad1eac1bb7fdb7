"""End to end: the real Prefect flow on a small slice, a real DVC repo, a real MLflow SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import make_dvc_project, work_in
from mlflow.tracking import MlflowClient
from scribbles.core import hookimpl, load_config
from scribbles.flows.experiment import experiment
from scribbles.flows.lifecycle import observing


def dvc_recorded_md5(root: Path, relpath: str) -> str:
    """The md5 DVC records for data/<relpath>, read from the .dir manifest that data.dvc points to."""
    pointer = yaml.safe_load((root / "data.dvc").read_text())
    dir_md5 = pointer["outs"][0]["md5"]
    manifest = root / ".dvc" / "cache" / "files" / "md5" / dir_md5[:2] / dir_md5[2:]
    entries = json.loads(manifest.read_text())
    return next(e["md5"] for e in entries if e["relpath"] == relpath)


@pytest.fixture
def project(tmp_path: Path, activity_small, digits_small, monkeypatch: pytest.MonkeyPatch,
            prefect_api: str) -> Path:
    """A git + DVC project with the small demo slices, as the working directory."""
    root = make_dvc_project(tmp_path / "proj", {"activity.csv": activity_small, "digits.csv": digits_small})
    return work_in(root, monkeypatch)


def config_for(name: str, *overrides: str) -> dict:
    path = Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml"
    return load_config(path, list(overrides)).model_dump(mode="json")


def runs_of(client: MlflowClient, experiment_name: str) -> list:
    exp = client.get_experiment_by_name(experiment_name)
    return client.search_runs([exp.experiment_id])


def test_activity_flow_records_everything_in_mlflow(project: Path) -> None:
    """Parent + nested folds FINISHED, params, per-epoch losses, TTA metrics, lineage tags."""
    result = experiment(config_for("activity", "train.epochs=2", "split.n_splits=3", "model.hidden=16"))
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = runs_of(client, "activity-grouped")
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    folds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.run_id == result["links"]["mlflow_run_id"]
    assert parent.info.status == "FINISHED"
    assert len(folds) == 3 and all(f.info.status == "FINISHED" for f in folds)

    for key in ("accuracy_mean", "accuracy_std", "accuracy_tta_mean", "accuracy_tta_std", "f1_macro_mean"):
        assert key in parent.data.metrics
    for fold in folds:
        assert {"accuracy", "accuracy_tta", "f1_macro", "f1_macro_tta"} <= set(fold.data.metrics)
        history = client.get_metric_history(fold.info.run_id, "train_loss")
        assert [m.step for m in history] == [0, 1]
        assert len(client.get_metric_history(fold.info.run_id, "valid_loss")) == 2

    params = parent.data.params
    assert params["split.name"] == "group_kfold"
    assert params["model.name"] == "gru"
    assert params["train.strategy"] == "single"
    assert params["model.hidden"] == "16"

    tags = parent.data.tags
    expected_md5 = dvc_recorded_md5(project, "activity.csv")
    assert tags["scribbles.data_version"] == expected_md5 == result["data_version"]
    assert tags["scribbles.splitter"] == "group_kfold"
    assert tags["scribbles.strategy"] == "single"
    assert len(tags["scribbles.git_commit"]) >= 40
    inputs = client.get_run(parent.info.run_id).inputs.dataset_inputs
    assert inputs[0].dataset.digest == expected_md5[:36]

    mean = sum(f.data.metrics["accuracy"] for f in folds) / 3
    assert parent.data.metrics["accuracy_mean"] == pytest.approx(mean)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "resolved_config.yaml"} <= artifacts


def test_digits_flow_with_image_tta(project: Path) -> None:
    """The image config trains an MLP on 8x8 digits and reports with and without hflip TTA."""
    overrides = ("train.epochs=8", "train.batch_size=32", "train.lr=3e-3", "split.n_splits=2")
    result = experiment(config_for("digits", *overrides))
    assert len(result["folds"]) == 2
    assert result["summary"]["accuracy_mean"] > 0.5  # ten classes: chance is 0.1
    assert "accuracy_tta_mean" in result["summary"]


class _FailOnFold:
    """An observer that breaks the run at the end of fold 1."""

    @hookimpl
    def scribbles_fold_end(self, ctx) -> None:
        if ctx.fold_index == 1:
            raise RuntimeError("disk full")


def test_failed_run_is_marked_failed_never_running(project: Path) -> None:
    """An exception mid-run ends the parent and the open fold runs as FAILED."""
    with observing(_FailOnFold()), pytest.raises(RuntimeError, match="disk full"):
        experiment(config_for("activity-time", "train.epochs=1", "split.n_splits=2", "experiment=broken"))
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = runs_of(client, "broken")
    statuses = sorted(r.info.status for r in runs)
    assert "RUNNING" not in statuses
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FAILED"
    assert "disk full" in parent.data.tags["scribbles.error"]
