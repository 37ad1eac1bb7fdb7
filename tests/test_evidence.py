"""Decisions with evidence, end to end on a real flow and a real MLflow SQLite store: the split
fingerprint, paired `scribbles compare A B`, repeated cross-validation.

Runs are a k-NN on the small activity slice (the sklearn strategy: seconds per run).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import make_dvc_project, run_cli, work_in
from mlflow.tracking import MlflowClient
from scribbles.core import load_config
from scribbles.core.evaluation import compare_paired
from scribbles.core.fingerprint import TAGS as RECORD_KEYS
from scribbles.flows.experiment import experiment
from scribbles.plugins.trackers.names import tag as tag_of

#: The MLflow tags that hold the split fingerprint's parts.
TAGS = {part: tag_of(key) for part, key in RECORD_KEYS.items()}

REPO = Path(__file__).resolve().parents[1]
# log_loss too: the statistics and worst-group tables must handle a metric where lower is better.
KNN = ("split.name=kfold", "split.n_splits=3", "split.shuffle=true", "split.seed=0", "experiment=evidence",
       "evaluate.metrics=[accuracy,f1_macro,log_loss]")


@pytest.fixture(scope="module")
def evidence_project(tmp_path_factory: pytest.TempPathFactory, activity_small) -> Path:
    """A git + DVC project with the small activity slice."""
    return make_dvc_project(tmp_path_factory.mktemp("evidence") / "proj", {"activity.csv": activity_small})


@pytest.fixture
def project(evidence_project: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: str) -> Path:
    return work_in(evidence_project, monkeypatch)


def knn(*overrides: str) -> dict:
    """The shipped k-NN config on shuffled 3-fold k-fold (overrides after)."""
    return load_config(REPO / "configs" / "activity-knn.yaml", [*KNN, *overrides]).model_dump(mode="json")


def stump_config() -> dict:
    """A depth-1 decision tree on the same folds as ``knn("experiment=promoted")``: clearly worse."""
    config = knn("experiment=promoted")
    config["model"] = {"name": "decision_tree", "max_depth": 1}
    return config


def folds_of(client: MlflowClient, parent_id: str) -> list:
    exp = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.\"mlflow.parentRunId\" = '{parent_id}'")
    return sorted(runs, key=lambda r: int(r.data.tags["scribbles.fold"]))


def test_compare_pairs_two_runs_on_the_same_folds(project: Path, prefect_api: str) -> None:
    """Fingerprints on parent and folds; `compare A B --json` equals the statistics of the fold runs'
    own metrics; a run on other folds is refused with exit 2 and the reason."""
    a = experiment(knn())["links"]["mlflow_run_id"]
    b = experiment(knn("model.metric=manhattan", "model.weights=distance"))["links"]["mlflow_run_id"]
    other = experiment(knn("split.seed=1"))["links"]["mlflow_run_id"]
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    run_a, run_b = client.get_run(a), client.get_run(b)
    fingerprint = run_a.data.tags[TAGS["fingerprint"]]
    assert len(fingerprint) == 64 and run_b.data.tags[TAGS["fingerprint"]] == fingerprint
    assert client.get_run(other).data.tags[TAGS["fingerprint"]] != fingerprint
    assert json.loads(run_a.data.tags[TAGS["split"]])["seed"] == 0
    folds_a, folds_b = folds_of(client, a), folds_of(client, b)
    assert {f.data.tags[TAGS["fingerprint"]] for f in folds_a} == {fingerprint}

    env = {"PREFECT_API_URL": prefect_api}
    out = run_cli("compare", a, b, "--json", "--rope", "0.01", cwd=project, env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    names = ["accuracy", "f1_macro", "log_loss"]
    assert report["folds"] == 3
    assert [r["metric"] for r in report["results"]] == [*names, *(f"{m}_worst_group" for m in names)]
    n = len(project.joinpath("data", "activity.csv").read_text().splitlines()) - 1
    for result in report["results"]:
        name = result["metric"]
        ours = compare_paired(name, np.array([f.data.metrics[name] for f in folds_a]),
                              np.array([f.data.metrics[name] for f in folds_b]),
                              n_train=n * 2 / 3, n_test=n / 3, rope=0.01,
                              greater_is_better=not name.startswith("log_loss"))
        assert result["mean_diff"] == pytest.approx(ours.mean_diff)
        assert result["p"] == pytest.approx(ours.p, rel=1e-3)  # fold sizes differ by a row at most
        assert result["wilcoxon_p"] == pytest.approx(ours.wilcoxon_p)
        assert result["p_better"] + result["p_equivalent"] + result["p_worse"] == pytest.approx(1.0)
    # The 8 characters of an id that the tables show are enough (they were "no run 'dc3518e3'").
    text = run_cli("compare", a[:8], b[:8], "--metric", "accuracy", cwd=project, env=env)
    assert text.returncode == 0 and "corrected" in text.stdout and "Wilcoxon" in text.stdout, text.stderr
    short = run_cli("compare", a[:4], b, cwd=project, env=env)  # too short to be taken for an id
    assert short.returncode == 2 and f"no run '{a[:4]}'" in short.stderr, short.stderr
    assert "a shortened id needs at least 6 characters" in short.stderr, short.stderr

    refused = run_cli("compare", a, other, cwd=project, env=env)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: ") and "assigned to folds differently" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    unknown = run_cli("compare", a, b, "--metric", "auc", cwd=project, env=env)
    assert unknown.returncode == 2 and "--metric: 'auc'" in unknown.stderr and "accuracy" in unknown.stderr
    typo = run_cli("compare", a, b, "--metric", "acuracy", cwd=project, env=env)
    assert typo.returncode == 2 and "did you mean 'accuracy'?" in typo.stderr, typo.stderr
    negative = run_cli("compare", a, b, "--rope", "-1", cwd=project, env=env)
    assert negative.returncode == 2 and "--rope" in negative.stderr
    recent = json.loads(run_cli("compare", "--experiment", "evidence", "--json", cwd=project, env=env).stdout)
    assert {r["run_id"]: r["split_fingerprint"] for r in recent["runs"]}[b] == fingerprint
    listing = run_cli("compare", "--experiment", "evidence", cwd=project, env=env)
    assert listing.returncode == 0 and fingerprint[:8] in listing.stdout, listing.stderr
    one = run_cli("compare", a, cwd=project, env=env)
    assert one.returncode == 2 and "two run ids" in one.stderr


def test_each_fold_reports_its_groups_and_the_worst(project: Path, prefect_api: str) -> None:
    """With a group column, each fold run holds group_metrics.csv (one row per valid subject) and
    `{metric}_worst_group` equal to that table's worst value; the parent has its fold mean."""
    import pandas as pd
    from rich.console import Console
    from scribbles.flows.commands.run import print_results

    result = experiment(knn("experiment=groups"))
    parent = result["links"]["mlflow_run_id"]
    console = Console(record=True, width=100)
    print_results(console, result)
    worst = np.array([f["accuracy_worst_group"] for f in result["folds"]])
    assert f"worst group's accuracy: {worst.mean():.4f} ± {worst.std():.4f} over 3 folds" in console.export_text()
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    for fold in folds_of(client, parent):
        path = client.download_artifacts(fold.info.run_id, "group_metrics.csv", str(project / "dl"))
        table = pd.read_csv(path)
        report = json.loads(Path(client.download_artifacts(fold.info.run_id, "fold_report.json",
                                                           str(project / "dl"))).read_text())
        assert table["rows"].sum() == report["valid_rows"] and len(table) == report["valid_groups"]
        metrics = fold.data.metrics
        assert metrics["accuracy_worst_group"] == pytest.approx(table["accuracy"].min())
        assert metrics["log_loss_worst_group"] == pytest.approx(table["log_loss"].max())
        assert metrics["accuracy_worst_group"] <= metrics["accuracy"]
        overall = (table["accuracy"] * table["rows"]).sum() / table["rows"].sum()
        assert overall == pytest.approx(metrics["accuracy"])  # the groups partition the valid rows
    assert "accuracy_worst_group_mean" in client.get_run(parent).data.metrics


def test_mlflow_ui_gets_model_training_view_logged_model_and_readable_plots(project: Path, prefect_api: str) -> None:
    """The experiment opens in the model-training view (a user's own choice kept); the parent's model is
    one of its logged models and loads; the confusion matrix is full size with counts and rates; the
    grouped fold timeline draws one block of valid groups per fold, not an even tint."""
    import matplotlib.image
    import mlflow.pytorch
    from scribbles.core import Dataset, create
    from scribbles.core.data import guarded_folds
    from scribbles.flows.plots import fold_timeline

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    client.create_experiment("chosen", tags={"mlflow.experimentKind": "genai_development"})
    parent = experiment(knn("experiment=ui-view"))["links"]["mlflow_run_id"]
    experiment(knn("experiment=chosen"))
    assert client.get_experiment_by_name("ui-view").tags["mlflow.experimentKind"] == "custom_model_development"
    assert client.get_experiment_by_name("chosen").tags["mlflow.experimentKind"] == "genai_development"
    run = client.get_run(parent)
    (output,) = run.outputs.model_outputs
    logged = client.get_logged_model(output.model_id)
    assert logged.source_run_id == parent and str(logged.status) in ("READY", "LoggedModelStatus.READY")
    assert run.data.tags["scribbles.logged_model"] == output.model_id
    assert mlflow.pytorch.load_model(f"models:/{output.model_id}") is not None

    picture = matplotlib.image.imread(client.download_artifacts(parent, "plots/confusion_matrix.png",
                                                                str(project / "ui")))
    assert picture.shape[1] >= 800 and picture.shape[0] >= 450  # was about 250 px

    frame = __import__("pandas").read_csv(project / "data" / "activity.csv")
    dataset = Dataset(frame, "activity", ["x"], group="subject", time="timestamp")
    folds = guarded_folds(create("splitter", "group_kfold", n_splits=3), dataset)
    image = matplotlib.image.imread(fold_timeline(dataset, folds, project / "ui" / "timeline.png", "group_kfold"))
    orange = np.all(np.abs(image[..., :3] - np.array([0xF5, 0x85, 0x18]) / 255) < 0.02, axis=-1)
    assert orange.any()  # an even tint (the old drawing of a grouped split) has no pure valid colour
    starts = set()
    for row in np.flatnonzero(orange.sum(1) > 0.2 * orange.sum(1).max()):
        columns = np.flatnonzero(orange[row])
        assert columns.max() - columns.min() + 1 == len(columns)  # one block: groups drawn whole, in order
        starts.add(int(columns.min()) // 10)
    assert len(starts) >= 3  # each fold's block elsewhere along the groups


def test_repeated_cv_runs_every_repeat_and_pairs_all_folds(project: Path, prefect_api: str) -> None:
    """`split.repeats: 2` on 3-fold k-fold: 6 fold runs named by repeat and fold, each repeat a
    different shuffle, and compare pairs all 6."""
    result = experiment(knn("split.repeats=2", "experiment=repeated"))
    b = experiment(knn("split.repeats=2", "experiment=repeated", "model.metric=manhattan"))
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    a_id = result["links"]["mlflow_run_id"]
    folds = folds_of(client, a_id)
    assert [f.info.run_name for f in folds] == [f"repeat-{r}/fold-{i}" for r in range(2) for i in range(3)]
    assert [f.data.tags["scribbles.repeat"] for f in folds] == ["0", "0", "0", "1", "1", "1"]
    assert len(result["folds"]) == 6
    assert client.get_run(a_id).data.params["split.repeats"] == "2"
    # Repeat 1 is a different shuffle from repeat 0: its first fold's accuracy is from other rows.
    from scribbles.core import Dataset, create

    frame = __import__("pandas").read_csv(project / "data" / "activity.csv")
    dataset = Dataset(frame, "activity", [c for c in frame.columns if c not in ("activity", "subject", "timestamp")])
    from scribbles.core.data import with_repeats

    splitter = with_repeats(create("splitter", "kfold", n_splits=3, shuffle=True, seed=0), 2)
    valid = [f.valid for f in splitter.split(dataset)]
    assert len(valid) == 6 and not np.array_equal(valid[0], valid[3])
    assert all(np.array_equal(v, f.valid) for v, f in zip(valid[:3], create(
        "splitter", "kfold", n_splits=3, shuffle=True, seed=0).split(dataset), strict=True))
    out = run_cli("compare", a_id, b["links"]["mlflow_run_id"], "--json", "--metric", "accuracy", cwd=project,
                  env={"PREFECT_API_URL": prefect_api})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["folds"] == 6


def test_repeats_on_a_splitter_that_does_not_shuffle_is_refused(project: Path, prefect_api: str) -> None:
    """`split.repeats` on unshuffled folds: exit 2, one line naming the field and the fix, no run made."""
    (project / "repeat.yaml").write_text((REPO / "configs" / "activity-knn.yaml").read_text())
    out = run_cli("run", "repeat.yaml", "--set", "split.repeats=3", "--set", "experiment=never", cwd=project,
                  env={"PREFECT_API_URL": prefect_api})
    assert out.returncode == 2
    assert out.stderr.startswith("error: split.repeats: splitter 'group_kfold'") and "shuffle: true" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    assert client.get_experiment_by_name("never") is None


def test_sweep_marks_trials_not_significantly_worse_than_the_best(project: Path, prefect_api: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A decision-tree sweep on 5-fold x 2 repeats: the stump is significantly worse than the best tree,
    in the printed table and in trials.json; each mark agrees with the one-sided corrected test."""
    from scribbles.core.evaluation import not_worse

    monkeypatch.delenv("COLUMNS", raising=False)  # pytest-xdist's workers export COLUMNS=80; a shell does not

    (project / "sweep.yaml").write_text(
        "experiment: sweep-evidence\n"
        "data: {name: dvc, path: data/activity.csv, target: activity, group: subject, time: timestamp}\n"
        "split: {name: stratified_kfold, n_splits: 5, shuffle: true, seed: 0, repeats: 2}\n"
        "model: {name: decision_tree}\n"
        "sweep: {grid: {model.max_depth: [1, 4, null]}}\n")
    out = run_cli("run", "sweep.yaml", cwd=project, env={"PREFECT_API_URL": prefect_api})
    assert out.returncode == 0, out.stderr
    assert "vs best" in out.stdout and "worse (p" in out.stdout
    assert "sweep of 3 trials" in out.stderr, out.stderr  # the grid's combinations
    # No TTA configured: no TTA column (as the fold table); piped stdout is not cut to 80 columns.
    assert "(TTA)" not in out.stdout and "…" not in out.stdout, out.stdout
    assert "best trial (corrected paired t-test on the same folds, one-sided" in out.stdout  # not wrapped at 80
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("sweep-evidence")
    sweep = next(r for r in client.search_runs([exp.experiment_id]) if "scribbles.sweep" in r.data.tags)
    table = json.loads(Path(client.download_artifacts(sweep.info.run_id, "trials.json", str(project))).read_text())
    assert table[0]["not_worse"] is True and table[0]["assignment"]["model.max_depth"] != 1
    stump = next(t for t in table if t["assignment"]["model.max_depth"] == 1)
    assert stump["not_worse"] is False and stump["p_vs_best"] < 0.05
    best_folds = folds_of(client, table[0]["run_id"])
    n = len(project.joinpath("data", "activity.csv").read_text().splitlines()) - 1
    for trial in table[1:]:
        folds = folds_of(client, trial["run_id"])
        assert len(folds) == 10
        expected = not_worse(np.array([f.data.metrics["accuracy"] for f in best_folds]),
                             np.array([f.data.metrics["accuracy"] for f in folds]), n * 0.8, n * 0.2, True)
        assert trial["not_worse"] is expected


def test_promote_registers_the_fold_ensemble_only_when_better(project: Path, prefect_api: str) -> None:
    """First promotion takes the alias; the served ensemble averages the fold models' probabilities; a
    worse run is refused (exit 1, nothing registered) unless --force, which is recorded; a run on other
    folds is refused; a scheduled run's promotion (the flow's `promote`) refuses a run that is no better."""
    import mlflow.pytorch
    import torch

    env = {"PREFECT_API_URL": prefect_api}
    good = experiment(knn("experiment=promoted"))["links"]["mlflow_run_id"]
    stump = experiment(stump_config())["links"]["mlflow_run_id"]
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")

    # A --metric typo with no model holding the alias was registered (exit 0): checked against the run first.
    typo = run_cli("promote", good, "--alias", "champion", "--metric", "acuracy", cwd=project, env=env)
    assert typo.returncode == 2, typo.stderr
    assert typo.stderr.startswith("error: --metric: 'acuracy' is not a metric run ") and \
        "did you mean 'accuracy'?" in typo.stderr, typo.stderr
    assert client.search_registered_models() == []

    first = run_cli("promote", good, "--alias", "champion", "--json", cwd=project, env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["version"] == "1"
    version = client.get_model_version_by_alias("promoted", "champion")
    assert version.run_id == good and version.tags["scribbles.run_id"] == good
    parent = client.get_run(good)
    for tag in ("scribbles.data_version", "scribbles.split_fingerprint"):
        assert version.tags[tag] == parent.data.tags[tag]
    assert version.tags["scribbles.members"] == "3" and version.tags["scribbles.forced"] == "false"
    assert version.source.startswith("models:/")  # a logged model of the run: its "Logged models" tab
    assert client.get_logged_model(version.source.removeprefix("models:/")).source_run_id == good

    served = mlflow.pytorch.load_model("models:/promoted@champion")
    frame = __import__("pandas").read_csv(project / "data" / "activity.csv")
    rows = torch.tensor(frame.drop(columns=["activity", "subject", "timestamp"]).to_numpy()[:7], dtype=torch.float32)
    members = [mlflow.pytorch.load_model(client.download_artifacts(f.info.run_id, "model", str(project / f"m{i}")))
               for i, f in enumerate(folds_of(client, good))]
    expected = torch.stack([m(rows).softmax(-1) for m in members]).mean(0)
    assert torch.allclose(served(rows).softmax(-1), expected, atol=1e-6)

    refused = run_cli("promote", stump, "--alias", "champion", cwd=project, env=env)
    assert refused.returncode == 1 and "not significantly better" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(client.search_model_versions("name = 'promoted'")) == 1
    forced = run_cli("promote", stump, "--alias", "champion", "--force", cwd=project, env=env)
    assert forced.returncode == 0, forced.stderr
    holder = client.get_model_version_by_alias("promoted", "champion")
    assert holder.run_id == stump and holder.tags["scribbles.forced"] == "true"
    test = json.loads(holder.tags["scribbles.test"])
    assert test["holder_run"] == good and test["p_one_sided"] > 0.5 and test["metric"] == "accuracy"

    elsewhere = experiment(knn("experiment=promoted", "split.seed=3"))["links"]["mlflow_run_id"]
    other = run_cli("promote", elsewhere, "--alias", "champion", cwd=project, env=env)
    assert other.returncode == 1 and "not scored on the same folds" in other.stderr
    # What `scribbles serve --promote` runs after each scheduled run: the same config again is no better.
    again = experiment(stump_config(), promote="champion")
    assert again["promotion"]["promoted"] is False and "not significantly better" in again["promotion"]["reason"]
    for bad, field in ((["--alias", "v2"], "--alias"), (["--alias", "champion", "--alpha", "2"], "--alpha")):
        out = run_cli("promote", good, *bad, cwd=project, env=env)
        assert out.returncode == 2 and out.stderr.startswith(f"error: {field}"), out.stderr
    assert len(client.search_model_versions("name = 'promoted'")) == 2


def test_serve_promote_with_a_bad_alias_is_refused_before_serving(project: Path, prefect_api: str) -> None:
    """`serve --promote v1`: exit 2 naming --promote, before any server, schedule or run."""
    (project / "serve.yaml").write_text((REPO / "configs" / "activity-knn.yaml").read_text())
    out = run_cli("serve", "serve.yaml", "--interval", "60", "--promote", "v1", cwd=project,
                  env={"PREFECT_API_URL": prefect_api}, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("error: --promote: 'v1'"), out.stderr
