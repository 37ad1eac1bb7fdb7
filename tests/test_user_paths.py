"""What a new user reads and runs: every shipped config through the CLI on a fresh project, README's plugin
example installed as written, `scribbles split` on data with extra columns, `data build` in someone else's
project, and `resume` of a run that failed after its folds.

The project is made the way README says (`scribbles data build` in a fresh git + DVC repo holding the
repository's configs and data.dvc); epochs and folds are cut with `--set`, nothing else changes.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import git, run_cli
from mlflow.tracking import MlflowClient
from scribbles.core import hookimpl

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh project as a clone has it: configs/, data.dvc, then `scribbles data build`."""
    root = tmp_path_factory.mktemp("demo") / "scribbles"
    root.mkdir()
    git("init", "-q", cwd=root)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    shutil.copytree(REPO / "configs", root / "configs")
    shutil.copy(REPO / "data.dvc", root / "data.dvc")
    built = run_cli("data", "build", cwd=root)
    assert built.returncode == 0, built.stderr
    return root


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The results table's rows (first cell -> the other cells), from rich's box drawing."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_config_runs_to_its_results_table(name: str, demo: Path, prefect_api: str) -> None:
    config = yaml.safe_load((demo / "configs" / name).read_text())
    cuts = ["--set", "train.epochs=1", "--set", "split.n_splits=2"]
    if "pretrain" in config["model"]:
        cuts += ["--set", "model.pretrain=1"]
    if "optuna" in config.get("sweep", {}):
        cuts += ["--set", "sweep.optuna.trials=3"]
    store = f"sqlite:///{demo / (name + '.db')}"
    result = run_cli("run", f"configs/{name}", *cuts, cwd=demo,
                     env={"PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": store})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr[-3000:]
    rows = table_rows(result.stdout)
    if "sweep" in config:
        check_sweep(config, rows, result.stdout, MlflowClient(store))
        return
    assert {"0", "1", "mean ± std"} <= set(rows), result.stdout
    first_metric = config["evaluate"]["metrics"][0]
    assert first_metric in result.stdout
    # The parent run FINISHED with the last fold's model, which loads and scores raw rows as the table says.
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name(config.get("experiment") or "default")
    parent = next(r for r in client.search_runs([experiment.experiment_id]) if "scribbles.fold" not in r.data.tags)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["scribbles.model_fold"] == "1"
    pooled = "residuals.png" if config.get("task") == "regression" else "confusion_matrix.png"
    assert {"learning_curves.png", pooled} <= {
        Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "plots")}


def check_sweep(config: dict, rows: dict[str, list[str]], stdout: str, client: MlflowClient) -> None:
    """A sweep's table ranks every trial (1..n) by its metric; the sweep run FINISHED, each trial run
    FINISHED or, pruned, KILLED with the reason; no run is left RUNNING."""
    trials = 3
    assert {str(rank) for rank in range(1, trials + 1)} <= set(rows), stdout
    assert f"ranked by {config['sweep']['rank_by']}" in stdout
    experiment = client.get_experiment_by_name(config["experiment"])
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    sweep = [r for r in runs if r.data.tags.get("scribbles.sweep")]
    assert len(sweep) == 1 and sweep[0].info.status == "FINISHED"
    trial_runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sweep[0].info.run_id]
    assert len(trial_runs) == trials
    for run in trial_runs:
        pruned = "scribbles.pruned" in run.data.tags
        assert run.info.status == ("KILLED" if pruned else "FINISHED"), (run.info.status, run.data.tags)
    assert "RUNNING" not in {r.info.status for r in runs}


# ---------------------------------------------------------------- README's plugin example, verbatim


def readme_block(language: str, after: str) -> str:
    """The first fenced ``language`` block of README.md after the heading ``after``."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(after):]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"README has no {language} block after {after!r}"
    return match.group(1)


def test_readme_plugin_example_installs_and_runs_an_experiment(tmp_path: Path, prefect_api: str) -> None:
    heading = "## Adding a technique"
    code, entry_points = readme_block("python", heading), readme_block("toml", heading)
    package = tmp_path / "my-package"
    (package / "my_package").mkdir(parents=True)
    (package / "my_package" / "__init__.py").write_text("")
    (package / "my_package" / "splitters.py").write_text(code)
    (package / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "my-package"\nversion = "0.1.0"\n\n' + entry_points)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(package)], check=True, capture_output=True)
    env = {"PYTHONPATH": str(site), "SCRIBBLES_DISABLE_PLUGIN_AUTOLOAD": "0", "PREFECT_API_URL": prefect_api,
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}

    listed = run_cli("plugins", cwd=tmp_path, env=env)
    assert listed.returncode == 0 and re.search(r"every_other.*my-package", listed.stdout), listed.stdout
    checked = run_cli("plugins", "check", cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    from scribbles.testing import synthetic_frame

    synthetic_frame("tabular", rows=60).drop(columns=["g", "t"]).to_csv(tmp_path / "rows.csv", index=False)
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({
        "experiment": "readme-plugin",
        "data": {"name": "file", "path": "rows.csv", "target": "y"},
        "split": {"name": "every_other", "offset": 1},
        "model": {"name": "mlp", "hidden": [8]},
        "train": {"epochs": 1},
    }))
    result = run_cli("run", "exp.yaml", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert {"0", "1", "mean ± std"} <= set(table_rows(result.stdout))
    # The example's Params keeps pydantic's default (extra fields ignored); a misspelt field is still an error.
    misspelt = run_cli("run", "exp.yaml", "--set", "split.offst=1", cwd=tmp_path, env=env)
    assert misspelt.returncode == 2, misspelt.stdout + misspelt.stderr
    assert misspelt.stderr == ("error: split.offst: unknown field for splitter 'every_other'; known fields: offset; "
                               "did you mean 'offset'?\n"), misspelt.stderr


def test_a_class_naming_a_family_without_its_base_is_refused_with_the_base_to_subclass() -> None:
    from scribbles.core import Technique
    from scribbles.core.registry import technique_problem
    from scribbles.testing import technique_problems

    class Loose(Technique):
        """Alternate rows."""

        family = "splitter"
        name = "loose"

        def split(self, dataset):  # pragma: no cover - never reached: refused first
            yield from ()

    problem = technique_problem(Loose)
    assert problem and "scribbles.core.Splitter" in problem and "class Loose(Splitter)" in problem
    assert technique_problems(Loose) == [problem]  # the kit reports the same line


# ---------------------------------------------------------------- split, data build


def test_split_reads_only_the_columns_the_splitter_needs(tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "id": [f"row-{i:03d}" for i in range(40)],           # a string id: not a feature
        "recorded": pd.date_range("2024-01-01", periods=40, freq="D").astype(str),  # an undeclared timestamp
        "subject": np.repeat(np.arange(8), 5),
        "y": np.arange(40) % 2,
        "x": np.linspace(0, 1, 40),
    })
    frame.to_csv(tmp_path / "rows.csv", index=False)
    (tmp_path / "split.yaml").write_text(yaml.safe_dump({
        "data": {"name": "file", "path": "rows.csv", "target": "y", "group": "subject"},
        "split": {"name": "group_kfold", "n_splits": 4},
        "model": {"name": "mlp"},
    }))
    refused = run_cli("split", "split.yaml", "--out", "folds.csv", "--plot", "missing/timeline.png", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.startswith("error: --plot:"), refused.stderr
    assert not (tmp_path / "folds.csv").exists()  # nothing written before the refusal
    result = run_cli("split", "split.yaml", "--out", "folds.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folds = pd.read_csv(tmp_path / "folds.csv")
    valid = folds[folds.role == "valid"]
    assert sorted(valid.row) == list(range(40))  # every row validated exactly once
    for _, rows in valid.groupby("fold"):
        subjects = set(frame.subject.iloc[rows.row])
        trained = set(frame.subject.iloc[folds[(folds.fold == rows.fold.iloc[0]) & (folds.role == "train")].row])
        assert not subjects & trained  # grouped: no subject on both sides


def test_data_build_refuses_a_project_that_is_not_the_demo(tmp_path: Path) -> None:
    from helpers import make_dvc_project

    own = pd.DataFrame({"y": [0, 1, 0, 1], "x": [1.0, 2.0, 3.0, 4.0]})
    root = make_dvc_project(tmp_path / "mine", {"measurements.csv": own})
    before = {p.name: p.read_bytes() for p in (root / "data").iterdir()}
    pointer = (root / "data.dvc").read_text()
    # From the project root, and from folders inside it (DVC finds its project upward from there).
    for args, where in itertools.product((("data", "build"), ("data", "build", "--force")),
                                         (root, root / "data", root / ".dvc")):
        result = run_cli(*args, cwd=where)
        assert result.returncode == 2, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "data/activity.csv" in lines[0]
    assert not (root / "data" / "data").exists() and not (root / ".dvc" / "data").exists()
    assert {p.name: p.read_bytes() for p in (root / "data").iterdir()} == before
    assert (root / "data.dvc").read_text() == pointer

    # No data.dvc yet, but data/ holds the user's own files, even one named like a demo file: refused too.
    (root / "data.dvc").unlink()
    (root / "data" / "digits.csv").write_text("label,x\n1,2\n")
    for args in (("data", "build"), ("data", "build", "--force")):
        result = run_cli(*args, cwd=root)
        assert result.returncode == 2 and "measurements.csv" in result.stderr, result.stderr
    assert sorted(p.name for p in (root / "data").iterdir()) == ["digits.csv", "measurements.csv"]
    assert (root / "data" / "digits.csv").read_text() == "label,x\n1,2\n"


def test_demo_md5_is_what_the_committed_data_dvc_records() -> None:
    from scribbles.flows.data_store import DEMO_MD5

    assert yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]["md5"] == DEMO_MD5


# ---------------------------------------------------------------- resume keeps what the stopped run made


class FailAtRunEnd:
    """An observer whose run_end raises after every fold finished: a run that fails at its last step."""

    @hookimpl
    def scribbles_run_end(self, ctx) -> None:
        raise RuntimeError("stopped after the folds")


def tab10_pixels(png: Path, fold: int) -> int:
    """How many pixels of ``png`` have fold ``fold``'s tab10 colour (the learning-curve plot's line colour)."""
    from matplotlib import colormaps
    from matplotlib.image import imread

    image = imread(png)[..., :3]
    colour = np.array(colormaps["tab10"](fold)[:3])
    return int((np.abs(image - colour).max(-1) < 0.02).sum())


def test_resume_of_a_run_that_failed_after_its_folds_keeps_curves_and_model(
        tmp_path: Path, activity_small, monkeypatch: pytest.MonkeyPatch, prefect_api: str) -> None:
    from helpers import make_dvc_project, work_in
    from scribbles.flows.experiment import experiment
    from scribbles.flows.lifecycle import observing

    root = work_in(make_dvc_project(tmp_path / "proj", {"activity.csv": activity_small}), monkeypatch)
    (root / "exp.yaml").write_text(yaml.safe_dump({
        "experiment": "resume-keeps", "data": {"name": "dvc", "path": "data/activity.csv", "target": "activity",
                                               "group": "subject", "time": "timestamp"},
        "split": {"name": "group_kfold", "n_splits": 2}, "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 3},
    }))
    from scribbles.core import load_config

    config = load_config(root / "exp.yaml").model_dump(mode="json")
    with observing(FailAtRunEnd()), pytest.raises(RuntimeError, match="stopped after the folds"):
        experiment(config)
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("resume-keeps").experiment_id
    parent = next(r for r in client.search_runs([exp]) if "scribbles.fold" not in r.data.tags)
    assert parent.info.status == "FAILED"
    folds = {r.data.tags["scribbles.fold"]: r for r in client.search_runs([exp], "tags.\"scribbles.fold\" != ''")}
    assert {k: r.info.status for k, r in folds.items()} == {"0": "FINISHED", "1": "FINISHED"}

    resumed = run_cli("resume", parent.info.run_id, cwd=root, env={"PREFECT_API_URL": prefect_api})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["scribbles.model_fold"] == "1"
    # Both folds' curves are drawn (each fold's line colour is there), from the stopped run's record.
    png = Path(client.download_artifacts(parent.info.run_id, "plots/learning_curves.png", str(tmp_path)))
    assert tab10_pixels(png, 0) > 50 and tab10_pixels(png, 1) > 50
    # The model is fold 1's, taken from its fold run: it reproduces that fold's accuracy on raw rows.
    import mlflow.pytorch
    import torch
    from scribbles.core import create

    data = create("data", "dvc", path="data/activity.csv", target="activity", group="subject",
                  time="timestamp").load()
    fold1 = list(create("splitter", "group_kfold", n_splits=2).split(data))[1]
    model = mlflow.pytorch.load_model(f"runs:/{parent.info.run_id}/model")
    with torch.no_grad():
        predicted = model(torch.from_numpy(np.array(data.inputs(fold1.valid)))).argmax(1).numpy()
    assert float((predicted == data.labels(fold1.valid)).mean()) == pytest.approx(
        folds["1"].data.metrics["accuracy"], abs=1e-6)


def test_a_one_pass_fit_plots_train_and_valid_loss_per_fold(tmp_path: Path) -> None:
    """Classic models have one 'epoch': the learning-curves plot shows each fold's two losses as bars whose
    heights are the losses (read back from the picture), never an empty axes."""
    from matplotlib.image import imread
    from scribbles.plugins.trackers.plots import plot_learning_curves

    histories = {0: [{"train_loss": 1.0, "valid_loss": 2.0}], 1: [{"train_loss": 1.0, "valid_loss": 4.0}]}
    image = imread(plot_learning_curves(histories, "knn", tmp_path / "curves.png"))[..., :3]

    def column_heights(hex_colour: str) -> list[int]:
        colour = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
        mask = np.abs(image - colour).max(-1) < 0.02
        columns = np.flatnonzero(mask.sum(0) > 0)
        runs = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)  # one run of columns per bar
        inside = 0.84 * image.shape[1]  # the axes end there; the legend's swatches sit to the right
        return [int(mask[:, run].sum(0).max()) for run in runs if len(run) and run[-1] < inside]

    train, valid = column_heights("#4c78a8"), column_heights("#f58518")
    assert len(train) == 2 and len(valid) == 2  # a bar per fold per loss
    assert train[0] == pytest.approx(train[1], abs=2)
    assert valid[0] == pytest.approx(2 * train[0], rel=0.05) and valid[1] == pytest.approx(4 * train[0], rel=0.05)
