"""TTA through the real flow: per-fold and parent metrics in MLflow, the results table, exit 2 on misfit."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import make_dvc_project, run_cli, work_in
from mlflow.tracking import MlflowClient
from rich.console import Console
from scribbles.core import load_config
from scribbles.flows.commands.run import print_results
from scribbles.flows.experiment import experiment

REPO = Path(__file__).resolve().parents[1]
# The shipped digits config made quick: two folds, two epochs, a narrow net.
QUICK = ("split.n_splits=2", "train.epochs=2", "model.channels=[8]")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, digits_small, activity_small,
            prefect_api: str) -> Iterator[Path]:
    """A git + DVC project with the small demo slices and the shipped configs, as the working directory.

    One per module: building a DVC repo costs seconds and these tests only add MLflow runs to it.
    """
    root = make_dvc_project(tmp_path_factory.mktemp("tta") / "proj",
                            {"digits.csv": digits_small, "activity.csv": activity_small})
    shutil.copytree(REPO / "configs", root / "configs")
    with pytest.MonkeyPatch.context() as patch:
        work_in(root, patch)
        patch.setenv("PREFECT_API_URL", prefect_api)
        yield root


def digits(*overrides: str) -> dict:
    return load_config(REPO / "configs" / "digits.yaml", [*QUICK, *overrides]).model_dump(mode="json")


def test_fold_and_parent_runs_carry_tta_breakdown_and_gain(project: Path) -> None:
    """Each fold run: plain, TTA, gain and each transform alone; the parent: mean and std of each."""
    result = experiment(digits())
    assert result["transforms"] == ["shift", "shift_2"]
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    parent = client.get_run(result["links"]["mlflow_run_id"])
    folds = client.search_runs([parent.info.experiment_id],
                               f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(folds) == 2
    names = [f"accuracy{suffix}" for suffix in ("", "_tta", "_tta_gain", "_tta_shift", "_tta_shift_2")]
    for fold in folds:
        metrics = fold.data.metrics
        assert set(names) <= set(metrics)
        assert metrics["accuracy_tta_gain"] == pytest.approx(metrics["accuracy_tta"] - metrics["accuracy"])
    for name in names:
        values = [f.data.metrics[name] for f in folds]
        assert parent.data.metrics[f"{name}_mean"] == pytest.approx(sum(values) / 2)
        assert parent.data.metrics[f"{name}_std"] == pytest.approx(abs(values[0] - values[1]) / 2)
    # The results table: plain, TTA, the gain with its spread, then each transform alone.
    out = Console(record=True, width=200)
    print_results(out, result)
    text = out.export_text()
    assert "TTA gain" in text and "mean ± std" in text
    gains = [f["accuracy_tta_gain"] for f in result["folds"]]
    spread = f"{sum(gains) / 2:+.4f} ± {abs(gains[0] - gains[1]) / 2:.4f}"
    assert f"TTA gain on accuracy: {spread} over 2 folds" in text
    assert "shift alone:" in text and "shift_2 alone:" in text
    # Shifted views change probabilities: TTA is not the plain prediction.
    assert any(f["f1_macro_tta"] != f["f1_macro"] or f["accuracy_tta"] != f["accuracy"] for f in result["folds"])


def test_without_transforms_tta_equals_plain_exactly(project: Path) -> None:
    """No TTA section: {metric}_tta is {metric} on every fold, exactly, and the gain is zero."""
    result = experiment(digits("evaluate.tta=null"))
    assert result["transforms"] == []
    for fold in result["folds"]:
        assert fold["accuracy_tta"] == fold["accuracy"] and fold["f1_macro_tta"] == fold["f1_macro"]
        assert fold["accuracy_tta_gain"] == 0.0


def test_misfit_transform_is_exit_2(project: Path) -> None:
    """hflip on sequences: one line naming the field, exit 2, no traceback, before any work."""
    bad = run_cli("run", "configs/activity.yaml", "--set", "evaluate.tta.transforms=[{name: hflip}]", cwd=project)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stdout + bad.stderr
    assert "evaluate.tta.transforms.0.name: transform 'hflip' does not fit sequence data" in bad.stderr
