"""`scribbles split`, the leakage guard in the real flow and CLI, and the fold timeline in MLflow."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from helpers import make_dvc_project, run_cli, work_in
from mlflow.tracking import MlflowClient
from scribbles.core import create, load_config

REPO = Path(__file__).resolve().parents[1]

LEAKY_SPLITTER = '''
    import numpy as np
    from pydantic import BaseModel
    from scribbles.core import Fold, Splitter, hookimpl

    class Leaky(Splitter):
        """Validate on rows that are also trained on (a bug the guard must catch)."""
        name = "leaky"
        class Params(BaseModel):
            n_splits: int = 2
        def split(self, dataset):
            rows = np.arange(len(dataset))
            yield Fold(0, rows[: len(rows) // 2 + 5], rows[len(rows) // 2 :])

    @hookimpl
    def scribbles_techniques():
        return [Leaky]
'''


@pytest.fixture
def project(tmp_path: Path, activity_small, digits_small, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git + DVC project with the small demo slices and the shipped configs."""
    monkeypatch.delenv("COLUMNS", raising=False)  # pytest-xdist's workers export COLUMNS=80; a shell does not
    root = make_dvc_project(tmp_path / "proj", {"activity.csv": activity_small, "digits.csv": digits_small})
    shutil.copytree(REPO / "configs", root / "configs")
    return root


def leaky_site(root: Path) -> Path:
    """A site directory holding an installed third-party plugin distribution with a leaking splitter."""
    site = root / "site"
    site.mkdir()
    (site / "scribbles_leaky.py").write_text(textwrap.dedent(LEAKY_SPLITTER))
    info = site / "scribbles_leaky-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: scribbles-leaky\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[scribbles.plugins]\nscribbles_leaky = scribbles_leaky\n")
    return site


def test_split_writes_the_guarded_assignment(project: Path, activity_small: pd.DataFrame) -> None:
    """Grouped and time configs of the activity demo pass the guard; the CSV holds every fold's sides."""
    result = run_cli("split", "configs/activity.yaml", "--out", "folds/grouped.csv", cwd=project)
    assert result.returncode == 2 and "--out: directory folds does not exist" in result.stderr
    (project / "folds").mkdir()
    result = run_cli("split", "configs/activity.yaml", "--out", "folds/grouped.csv", "--plot", "folds/grouped.png",
                     cwd=project)
    assert result.returncode == 0, result.stderr
    assert "group_kfold: 5 folds of" in result.stdout and "leakage guard passed" in result.stdout
    table = pd.read_csv(project / "folds" / "grouped.csv")
    assert list(table.columns) == ["row", "fold", "role"] and set(table["role"]) == {"train", "valid"}
    valid = table[table["role"] == "valid"]
    assert sorted(valid["row"]) == list(range(len(activity_small)))  # each row validated exactly once
    subjects = activity_small["subject"].to_numpy()
    for _, fold in table.groupby("fold"):
        train = set(subjects[fold.loc[fold["role"] == "train", "row"]])
        assert not train & set(subjects[fold.loc[fold["role"] == "valid", "row"]])
    assert (project / "folds" / "grouped.png").read_bytes()[:4] == b"\x89PNG"

    result = run_cli("split", "configs/activity-time.yaml", "--out", "folds/time.csv", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "time_series: 4 folds of" in result.stdout
    table = pd.read_csv(project / "folds" / "time.csv")
    times = pd.to_datetime(activity_small["timestamp"])
    for _, fold in table.groupby("fold"):
        train = times.iloc[fold.loc[fold["role"] == "train", "row"]]
        valid = times.iloc[fold.loc[fold["role"] == "valid", "row"]]
        assert train.max() + pd.Timedelta("1D") < valid.min()
    assert sorted(p.name for p in (project / "folds").iterdir()) == ["grouped.csv", "grouped.png", "time.csv"]


def test_split_refuses_bad_input_in_one_line(project: Path) -> None:
    """A grouped splitter without data.group, an unreadable duration, too many folds: exit 2, one line."""
    result = run_cli("split", "configs/digits.yaml", "--out", "f.csv", "--set", "split={name: group_kfold}",
                     cwd=project)
    assert result.returncode == 2, result.stderr
    assert "error: data.group: splitter 'group_kfold' keeps every group on one side" in result.stderr
    result = run_cli("split", "configs/activity-time.yaml", "--out", "f.csv", "--set", "split.gap=soon",
                     cwd=project)
    assert result.returncode == 2, result.stderr
    assert "split.gap: 'soon' is neither a row count nor a duration" in result.stderr
    result = run_cli("split", "configs/activity.yaml", "--out", "f.csv", "--set", "split.n_splits=31", cwd=project)
    assert result.returncode == 2
    assert "split.n_splits: group_kfold asks for 31 folds but the data has 30 groups" in result.stderr
    for output in (result.stderr, result.stdout):
        assert "Traceback" not in output
    assert not (project / "f.csv").exists()


def test_leaking_third_party_splitter_is_stopped_before_training(project: Path, prefect_api: str) -> None:
    """An installed plugin's leaking fold stops `split` and `run` with exit 1, naming splitter, fold and leak."""
    env = {"PYTHONPATH": str(leaky_site(project)), "SCRIBBLES_DISABLE_PLUGIN_AUTOLOAD": "0",
           "PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    expected = "splitter 'leaky', fold 0: 5 rows on both sides, e.g. row"
    result = run_cli("split", "configs/activity.yaml", "--set", "split={name: leaky}", "--out", "f.csv",
                     cwd=project, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not (project / "f.csv").exists()
    result = run_cli("run", "configs/activity.yaml", "--set", "split={name: leaky}", "--set", "train.epochs=1",
                     cwd=project, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr
    assert "accuracy" not in result.stdout  # no results table: no fold was trained
    if (project / "mlflow.db").exists():  # and no MLflow run was opened
        client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("activity-grouped")
        assert experiment is None or not client.search_runs([experiment.experiment_id])


def test_every_run_logs_the_fold_timeline(project: Path, prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent MLflow run holds fold_timeline.png, drawn from the guarded folds."""
    from scribbles.flows.experiment import experiment

    work_in(project, monkeypatch)
    config = load_config(project / "configs" / "activity-time.yaml",
                         ["train.epochs=1", "split.n_splits=2", "model.hidden=8", "experiment=timeline"])
    result = experiment(config.model_dump(mode="json"))
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    run_id = result["links"]["mlflow_run_id"]
    assert "fold_timeline.png" in {a.path for a in client.list_artifacts(run_id)}
    local = Path(client.download_artifacts(run_id, "fold_timeline.png", str(project)))
    assert local.read_bytes()[:4] == b"\x89PNG"
    # The folds the run trained are the splitter's: the logged fold report has their sizes, split by hand here.
    data = create("data", "dvc", path="data/activity.csv", target="activity", group="subject", time="timestamp",
                  kind="sequence", shape=[32, 3]).load()
    folds = list(create("splitter", "time_series", n_splits=2, gap="1D").split(data))
    report = json.loads(Path(client.download_artifacts(run_id, "fold_report.json", str(project / "r"))).read_text())
    assert [(r["train_rows"], r["valid_rows"]) for r in report] == [(len(f.train), len(f.valid)) for f in folds]
