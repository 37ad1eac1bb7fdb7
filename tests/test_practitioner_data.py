"""Data as practitioners have it: per-fold preprocessing, regression, baselines, more metrics, sequence layouts,
meaningless targets, and results that read the right way round.

Values are checked against scikit-learn (its transformers, metrics and dummy estimators) on the same rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers import run_cli
from mlflow.tracking import MlflowClient
from scribbles.core import BadInput, create, default_registry
from scribbles.core.data import column_maps, fit, served

REGISTRY = default_registry()


def frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Columns of very different scales, a text column, a missing value, groups and a 3-class target."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    out = pd.DataFrame({
        "g": np.repeat(np.arange(12), n // 12), "y": y,
        "radiation": rng.normal(300, 80, n) + 60 * y, "wind": rng.normal(3, 1, n) + y,
        "station": rng.choice(["north", "south", "east"], n), "rt": rng.normal(500, 90, n) + 40 * y,
    })
    out.loc[5, "wind"] = np.nan
    return out


# ---------------------------------------------------------------- preprocessing


def test_statistics_come_from_train_rows_only_and_match_scikit_learn() -> None:
    from sklearn.preprocessing import StandardScaler

    data = frame()
    train, valid = data.iloc[:80], data.iloc[80:].copy()
    steps = [create("preprocess", "impute"), create("preprocess", "standard")]
    features = ["radiation", "wind"]
    fitted = fit(steps, train, features)
    valid.loc[valid.index[0], "radiation"] = 1e9  # a valid-only value: it must not move anything
    again = fit(steps, pd.concat([train]), features)
    maps, maps_again = column_maps(fitted), column_maps(again)
    np.testing.assert_allclose(maps.center, maps_again.center)
    filled = train[features].fillna(train[features].median())
    reference = StandardScaler().fit(filled)
    np.testing.assert_allclose(maps.center, reference.mean_, rtol=1e-6)
    np.testing.assert_allclose(maps.scale, reference.scale_, rtol=1e-6)
    np.testing.assert_allclose(fitted.transform(train), reference.transform(filled), rtol=1e-5, atol=1e-5)


def test_column_maps_reproduce_the_pipeline_on_raw_rows_with_missing_values() -> None:
    """The logged model's own preprocessing (fill, center, scale per column) equals the fitted pipeline."""
    data = frame()
    steps = [create("preprocess", "robust"), create("preprocess", "impute", strategy="mean"),
             create("preprocess", "standard")]
    features = ["radiation", "wind"]
    fitted = fit(steps, data.iloc[:80], features)
    identity = served(torch.nn.Identity(), {"mean": column_maps(fitted).center.tolist(),
                                            "std": column_maps(fitted).scale.tolist(),
                                            "fill": column_maps(fitted).fill.tolist(), "shape": [2]})
    raw = torch.tensor(data[features].to_numpy(dtype=np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(identity(raw).numpy(), fitted.transform(data), rtol=1e-4, atol=1e-4)


def test_text_and_missing_features_need_their_steps(tmp_path: Path) -> None:
    frame().to_csv(tmp_path / "d.csv", index=False)
    base = {"data": {"name": "file", "path": "d.csv", "target": "y", "group": "g", "features":
                     ["radiation", "wind", "station"]}, "split": {"name": "group_kfold", "n_splits": 3},
            "model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 1}, "tracking": []}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(base))
    text = run_cli("run", "c.yaml", cwd=tmp_path)
    assert text.returncode == 2 and "station is not numeric" in text.stderr and "one_hot" in text.stderr
    missing = run_cli("run", "c.yaml", "--set", "preprocess=[{name: one_hot, columns: [station]}, {name: standard}]",
                      cwd=tmp_path)
    assert missing.returncode == 2 and "wind has missing values (e.g. row 5)" in missing.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_text_columns_get_the_fix_that_fits_them() -> None:
    """Every text column is named in the fix; an identifier and dates are to be left out, not one-hot encoded;
    a text column's missing values need no imputer once it is encoded; a step that cannot take a text column
    it names says so before any work (impute median raised inside scikit-learn, mid-run)."""
    from scribbles.core import BadInput, Dataset, create
    from scribbles.core.data import check_steps

    data = frame().assign(id=[f"P-{i:05d}" for i in range(120)], visit=pd.date_range("2024-01-01", periods=120)
                          .strftime("%Y-%m-%d"), site=lambda d: d["station"].where(d.index % 7 != 0))

    def refused(features: list[str], steps: list[dict[str, object]]) -> str:
        with pytest.raises(BadInput) as caught:
            check_steps([create("preprocess", s.pop("name"), **s) for s in steps],
                        Dataset(data, "y", features, group="g"))
        return str(caught.value)

    line = refused(["radiation", "station", "site", "id", "visit"], [{"name": "standard"}])
    assert line.startswith("data.features: station, site, id, visit are not numeric; encode station, site with "
                           "`preprocess: [{name: one_hot, columns: [station, site]}, {name: standard}]`"), line
    assert "leave out id (a different value on most rows" in line and "leave out visit (dates" in line, line
    check_steps([create("preprocess", "one_hot", columns=["site"]), create("preprocess", "standard")],
                Dataset(data, "y", ["radiation", "site"], group="g"))  # the missing values become a category
    line = refused(["radiation", "site"], [{"name": "impute", "strategy": "median", "columns": ["site"]},
                                           {"name": "one_hot", "columns": ["site"]}])
    assert line.startswith("preprocess.0.columns: 'site' holds text; impute strategy median needs numbers"), line
    line = refused(["radiation", "site"], [{"name": "impute", "strategy": "constant", "fill_value": "none"},
                                           {"name": "one_hot", "columns": ["site"]}])
    assert line.startswith("preprocess.0: 'radiation' holds numbers; impute fill_value 'none' is text"), line
    empty = data.assign(empty=np.nan)
    with pytest.raises(BadInput, match=r"^data\.features: empty holds no value on any row; leave it out"):
        check_steps([create("preprocess", "standard")], Dataset(empty, "y", ["radiation", "empty"], group="g"))


def test_one_hot_pipeline_runs_and_its_logged_model_takes_the_raw_columns(tmp_path: Path, prefect_api: str) -> None:
    import mlflow.pyfunc

    data = frame(240)
    data.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "experiment": "one-hot", "data": {"name": "file", "path": "d.csv", "target": "y", "group": "g",
                                          "features": ["radiation", "wind", "station"]},
        "split": {"name": "group_kfold", "n_splits": 2},
        "preprocess": [{"name": "impute"}, {"name": "one_hot", "columns": ["station"]}, {"name": "standard"}],
        "model": {"name": "mlp", "hidden": [16]}, "train": {"epochs": 30, "lr": 0.01},
    }))
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli("run", "c.yaml", cwd=tmp_path, env={"PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": store})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("one-hot").experiment_id])
    parent = next(r for r in runs if "scribbles.fold" not in r.data.tags)
    fold1 = next(r for r in runs if r.data.tags.get("scribbles.fold") == "1")
    assert parent.data.tags["scribbles.model_flavour"] == "pyfunc"
    model = mlflow.pyfunc.load_model(client.download_artifacts(parent.info.run_id, "model", str(tmp_path)))
    folds = list(create("splitter", "group_kfold", n_splits=2).split(
        create("data", "file", path=str(tmp_path / "d.csv"), target="y", group="g",
               features=["radiation", "wind", "station"]).load()))
    valid = data.iloc[folds[1].valid]
    scores = np.asarray(model.predict(valid[["radiation", "wind", "station"]]))
    assert scores.shape == (len(valid), 3)
    assert float(np.mean(scores.argmax(1) == valid["y"].to_numpy())) == pytest.approx(
        fold1.data.metrics["accuracy"], abs=1e-6)


# ---------------------------------------------------------------- regression


def test_energy_forecast_beats_the_train_mean_and_logs_residuals(tmp_path: Path, prefect_api: str) -> None:
    from scribbles.flows.demo_data import build_energy, write_csv

    (tmp_path / "data").mkdir()
    write_csv(build_energy(), tmp_path / "data" / "energy.csv")
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "energy-forecast.yaml").read_text())
    config["data"] = {**config["data"], "name": "file"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli("run", "c.yaml", "--set", "train.epochs=25", "--set", "split.n_splits=3", cwd=tmp_path,
                     env={"PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": store})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "(TTA)" not in result.stdout and "TTA gain" not in result.stdout  # no TTA: no TTA columns
    client = MlflowClient(store)
    parent = next(r for r in client.search_runs([client.get_experiment_by_name("energy-forecast").experiment_id])
                  if "scribbles.fold" not in r.data.tags)
    metrics = parent.data.metrics
    assert metrics["rmse_mean"] < metrics["rmse_baseline_mean"] and metrics["r2_mean"] > 0
    plots = {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "residuals.png" in plots and "confusion_matrix.png" not in plots


@pytest.mark.parametrize(("overrides", "field", "text"), [
    ((), "data.target", "For a numeric target set `task: regression`"),
    (("task=regression", "split.name=stratified_kfold"), "split.name", "keeps class proportions"),
    (("task=regression", "loss.name=cross_entropy"), "loss.name", "is for classification"),
    (("data.target=g",), "data.target", "is also data.group"),
    (("data.features=[y, radiation]", "data.target=y"), "data.features", "lists the target column"),
])
def test_meaningless_targets_and_mismatched_tasks_are_refused_before_work(
        overrides: tuple[str, ...], field: str, text: str, tmp_path: Path) -> None:
    frame().to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "data": {"name": "file", "path": "d.csv", "target": "rt", "group": "g", "features": ["radiation"]},
        "split": {"name": "kfold", "n_splits": 3}, "model": {"name": "mlp"}, "tracking": []}))
    sets = [arg for o in overrides for arg in ("--set", o)]
    result = run_cli("run", "c.yaml", *sets, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: {field}") and text in result.stderr and "Traceback" not in result.stderr


def test_a_whole_number_target_with_many_rare_values_is_taken_for_a_count_unless_task_is_set(
        tmp_path: Path) -> None:
    """Counts, prices and scores are stored as whole numbers: under the default task each value became a class
    of its own (161 classes, accuracy 0.01, exit 0). Refused as decimals are, unless the config sets the task;
    a whole-number target with a few classes (0, 1, 2) stays a classification."""
    from scribbles.core import BadInput, Dataset
    from scribbles.core.data import check_target

    data = frame().assign(score=lambda d: (d["rt"] / 10).round().astype(int))
    assert data["score"].nunique() > 20
    scores = Dataset(data, "score", ["radiation"], group="g")
    with pytest.raises(BadInput, match=r"^data.target: column 'score' holds .*set `task: regression`.*set `task: "
                                       r"classification`$"):
        check_target(scores, "classification", task_given=False)
    check_target(scores, "classification", task_given=True)  # the user said so
    check_target(scores, "regression", task_given=False)
    check_target(Dataset(data, "y", ["radiation"], group="g"), "classification", task_given=False)
    data.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "data": {"name": "file", "path": "d.csv", "target": "score", "group": "g", "features": ["radiation"]},
        "split": {"name": "group_kfold", "n_splits": 3}, "model": {"name": "mlp"}, "tracking": []}))
    refused = run_cli("run", "c.yaml", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.startswith("error: data.target: column 'score' holds"), \
        refused.stderr


def test_one_class_target_is_refused_and_a_constant_feature_warned_once(tmp_path: Path) -> None:
    data = frame()
    data["one"] = "same"
    data["flat"] = 7.0
    data.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "data": {"name": "file", "path": "d.csv", "target": "one", "features": ["radiation"]},
        "split": {"name": "kfold", "n_splits": 3}, "model": {"name": "mlp"}, "tracking": []}))
    refused = run_cli("run", "c.yaml", cwd=tmp_path)
    assert refused.returncode == 2 and "has one class (same)" in refused.stderr
    split = run_cli("run", "c.yaml", "--set", "data.target=y", "--set", "data.features=[radiation, flat]",
                    "--set", "train.epochs=1", cwd=tmp_path)
    warnings = [line for line in split.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "flat" in warnings[0], split.stderr


# ---------------------------------------------------------------- metrics, baseline, gain


def test_new_metrics_equal_scikit_learn() -> None:
    from sklearn import metrics as sk

    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 200)
    proba = rng.dirichlet(np.ones(4), 200)
    proba[np.arange(200), y] += 0.3
    proba /= proba.sum(1, keepdims=True)
    pred = proba.argmax(1)
    expected = {
        "balanced_accuracy": sk.balanced_accuracy_score(y, pred),
        "precision_macro": sk.precision_score(y, pred, average="macro", zero_division=0),
        "recall_macro": sk.recall_score(y, pred, average="macro", zero_division=0),
        "roc_auc": sk.roc_auc_score(y, proba, multi_class="ovr", average="macro"),
    }
    for name, value in expected.items():
        assert REGISTRY.create("metric", name).compute(y, proba) == pytest.approx(value), name
    target = rng.normal(10, 3, 200)
    predicted = (target + rng.normal(0, 1, 200)).reshape(-1, 1)
    assert REGISTRY.create("metric", "rmse").compute(target, predicted) == pytest.approx(
        np.sqrt(sk.mean_squared_error(target, predicted[:, 0])))
    assert REGISTRY.create("metric", "mae").compute(target, predicted) == pytest.approx(
        sk.mean_absolute_error(target, predicted[:, 0]))
    assert REGISTRY.create("metric", "r2").compute(target, predicted) == pytest.approx(sk.r2_score(target, predicted))


def test_balanced_class_weights_equal_scikit_learn() -> None:
    from scribbles.core import ModelSpec
    from scribbles.plugins.losses import class_weights
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * 70 + [1] * 20 + [2] * 10)
    spec = ModelSpec("tabular", (2,), 3, ("a", "b", "c"), tuple(np.bincount(y)))
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose(class_weights("balanced", spec).numpy(), expected, rtol=1e-6)


def test_baseline_is_scikit_learns_dummy_on_the_train_rows() -> None:
    from scribbles.core.evaluation import baseline_metrics
    from sklearn.dummy import DummyClassifier

    y_train, y_valid = np.array([0, 0, 0, 1, 2, 2]), np.array([0, 1, 2, 2])
    out = baseline_metrics([REGISTRY.create("metric", "accuracy"), REGISTRY.create("metric", "log_loss")],
                           "classification", y_train, y_valid, 3)
    dummy = DummyClassifier(strategy="prior").fit(np.zeros((6, 1)), y_train)
    assert out["accuracy_baseline"] == pytest.approx(dummy.score(np.zeros((4, 1)), y_valid))
    from sklearn.metrics import log_loss

    assert out["log_loss_baseline"] == pytest.approx(log_loss(y_valid, dummy.predict_proba(np.zeros((4, 1)))))


def test_gain_is_positive_when_tta_helps_whichever_way_the_metric_reads() -> None:
    from scribbles.core.evaluation import TTAResult, tta_metrics

    y = np.array([0, 1, 1])
    plain = np.array([[0.6, 0.4], [0.5, 0.5], [0.4, 0.6]])
    better = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.9]])
    out = tta_metrics([REGISTRY.create("metric", "log_loss"), REGISTRY.create("metric", "accuracy")], y,
                      TTAResult(plain, better, {}, "batched"))
    assert out["log_loss_tta"] < out["log_loss"] and out["log_loss_tta_gain"] > 0
    assert out["log_loss_tta_gain"] == pytest.approx(out["log_loss"] - out["log_loss_tta"])
    assert out["accuracy_tta_gain"] == pytest.approx(out["accuracy_tta"] - out["accuracy"])


# ---------------------------------------------------------------- sequence layouts


def test_channel_major_sequence_columns_are_refused_or_reordered(tmp_path: Path) -> None:
    steps, channels = 4, 2
    rng = np.random.default_rng(0)
    values = rng.normal(size=(30, channels, steps))  # [row, channel, step]
    columns = [f"c{c}_t{t:03d}" for c in range(channels) for t in range(steps)]  # channel-major
    data = pd.DataFrame(values.reshape(30, -1), columns=columns)
    data.insert(0, "y", np.arange(30) % 2)
    data.to_csv(tmp_path / "s.csv", index=False)
    params = {"path": str(tmp_path / "s.csv"), "target": "y", "kind": "sequence", "shape": [steps, channels]}
    with pytest.raises(Exception, match=r"data\.layout: .*channel_major"):
        create("data", "file", **params).load()
    dataset = create("data", "file", **params, layout="channel_major").load()
    # Read back as (steps, channels), the layout the models expect: row 0, step t, channel c.
    np.testing.assert_allclose(dataset.inputs()[0], values[0].T, rtol=1e-6)


def test_a_transposed_shape_of_time_major_columns_is_named_not_taken_for_channel_major(tmp_path: Path) -> None:
    """Columns t000_x, t000_y, t000_z, t001_x ... (time-major, 3 channels) read with data.shape [3, 32]
    (steps and channels swapped) also cycle with the length of "steps": the fix is the shape, not
    data.layout: channel_major, which would run on scrambled sequences (a trial got 0.38 accuracy)."""
    steps, channels = 32, ("x", "y", "z")
    columns = [f"t{t:03d}_{c}" for t in range(steps) for c in channels]
    data = pd.DataFrame(np.random.default_rng(0).normal(size=(20, len(columns))), columns=columns)
    data.insert(0, "y", np.arange(20) % 2)
    data.to_csv(tmp_path / "s.csv", index=False)
    params = {"path": str(tmp_path / "s.csv"), "target": "y", "kind": "sequence"}
    with pytest.raises(BadInput) as found:
        create("data", "file", **params, shape=[3, steps]).load()
    assert str(found.value) == ("data.shape: [3, 32] reads the columns as 3 steps of 32 channels, but their names "
                                "(t000_x, t000_y, ...) go through 3 channels (x, y, z) at each step: give "
                                "data.shape: [32, 3] ([steps, channels])")
    assert create("data", "file", **params, shape=[steps, 3]).load().inputs().shape == (20, steps, 3)


def test_long_format_sequences_become_rows_with_their_group_and_time(tmp_path: Path) -> None:
    """One row per (sequence, step) with a column per channel: one row per sequence, time-major, its group
    and first time kept, and the same inputs as the wide layout would give."""
    rng = np.random.default_rng(0)
    rows = []
    for seq in range(6):
        for t in range(5):
            rows.append({"window": f"w{seq}", "t": t, "subject": seq % 3, "label": seq % 2,
                         "at": f"2024-01-{seq + 1:02d}T00:00:{t:02d}", "ax": rng.normal(), "ay": rng.normal()})
    long = pd.DataFrame(rows).sample(frac=1, random_state=0)  # rows in any order
    long.to_csv(tmp_path / "long.csv", index=False)
    dataset = create("data", "file", path=str(tmp_path / "long.csv"), target="label", group="subject", time="at",
                     sequence_id="window", step="t").load()
    assert len(dataset) == 6 and dataset.kind == "sequence" and dataset.shape == (5, 2)
    ordered = pd.DataFrame(rows)
    first = ordered[ordered.window == "w3"].sort_values("t")
    np.testing.assert_allclose(dataset.inputs()[3], first[["ax", "ay"]].to_numpy(), rtol=1e-6)
    assert dataset.frame["subject"].tolist() == [0, 1, 2, 0, 1, 2]
    assert dataset.frame["at"].iloc[3] == "2024-01-04T00:00:00"
    uneven = long[~((long.window == "w2") & (long.t == 4))]
    uneven.to_csv(tmp_path / "uneven.csv", index=False)
    with pytest.raises(Exception, match=r"data\.step: sequences .* have 4 to 5 rows \(e\.g\. .w2.\)"):
        create("data", "file", path=str(tmp_path / "uneven.csv"), target="label", sequence_id="window",
               step="t").load()


@pytest.mark.parametrize("model", ["knn", "svm", "decision_tree", "mlp"])
def test_every_model_learns_a_regression_target_through_the_fold_task(model: str, tmp_path: Path) -> None:
    """The flow's own fold task (no Prefect) on a noisy linear target: each model, the classic ones as their
    scikit-learn regressors, beats the train mean; the fold's model read back predicts in target units."""
    from scribbles.core import default_registry as registry
    from scribbles.flows import fold_task
    from scribbles.flows.fold_outputs import read_outputs
    from scribbles.flows.fold_task import FoldJob, run_job

    rng = np.random.default_rng(0)
    data = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    data["y"] = 100 + 30 * data["a"] - 10 * data["b"] + rng.normal(0, 3, 200)
    data.to_csv(tmp_path / "r.csv", index=False)
    config = {"task": "regression", "data": {"name": "file", "path": str(tmp_path / "r.csv"), "target": "y"},
              "split": {"name": "kfold", "n_splits": 2}, "model": {"name": model},
              "train": {"epochs": 40, "lr": 0.01}, "tracking": []}
    ready = fold_task.prepare(config, False)
    try:
        result = run_job(FoldJob(config, False, 0, ready.dataset.version, str(tmp_path), str(tmp_path / "out")))
    finally:
        fold_task.forget()
    assert result.metrics["rmse"] < 0.5 * result.metrics["rmse_baseline"], result.metrics
    served = read_outputs(result.outputs, registry())["model"]
    valid = ready.folds[0].valid
    with torch.no_grad():
        predicted = served(torch.tensor(data[["a", "b"]].to_numpy(dtype=np.float32)[valid]))[:, 0].numpy()
    rmse = float(np.sqrt(np.mean((predicted - data["y"].to_numpy()[valid]) ** 2)))
    assert rmse == pytest.approx(result.metrics["rmse"], rel=1e-4)


def test_preprocess_shorthand_and_a_column_encoded_twice(tmp_path: Path) -> None:
    data = frame()
    data.to_csv(tmp_path / "d.csv", index=False)
    base = {"data": {"name": "file", "path": "d.csv", "target": "y", "group": "g",
                     "features": ["radiation", "wind", "station"]},
            "split": {"name": "group_kfold", "n_splits": 3}, "model": {"name": "mlp"}, "tracking": []}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(base))
    twice = run_cli("run", "c.yaml", "--set", "preprocess=[impute, {name: one_hot, columns: [station]}, "
                    "{name: one_hot, columns: [station]}]", cwd=tmp_path)
    assert twice.returncode == 2 and twice.stderr.startswith("error: preprocess.2.columns: 'station' was already")
    assert not (tmp_path / "mlflow.db").exists()
    from scribbles.core import load_config, resolve

    config = load_config(tmp_path / "c.yaml", ["preprocess=[impute, one_hot, standard]"])
    assert [s.name for s in resolve(config, REGISTRY).preprocess] == ["impute", "one_hot", "standard"]


def test_a_parquet_file_runs_without_warnings(tmp_path: Path, prefect_api: str) -> None:
    """Parquet columns are read-only arrays: torch warned about them on every fold ("The given NumPy array is
    not writable"), lines in the user's output."""
    frame().drop(columns=["station"]).to_parquet(tmp_path / "d.parquet")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "data": {"name": "file", "path": "d.parquet", "target": "y", "group": "g"},
        "preprocess": [{"name": "impute"}, {"name": "standard"}],
        "split": {"name": "group_kfold", "n_splits": 2}, "model": {"name": "mlp", "hidden": [4]},
        "train": {"epochs": 1}}))
    result = run_cli("run", "c.yaml", cwd=tmp_path, env={"PREFECT_API_URL": prefect_api})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stderr, result.stderr


def test_folds_that_train_but_mislead_are_warned_before_work() -> None:
    """A class that only some groups hold is missing from some folds' train rows (the model cannot predict
    it there), and one huge group makes one fold's valid rows dwarf the others': one warning line each."""
    from scribbles.core import Dataset, create
    from scribbles.core.data import fold_warnings, guarded_folds

    data = frame()
    data.loc[data["g"] == 7, "y"] = 3  # class 3: group 7's rows only
    dataset = Dataset(data, "y", ["radiation"], group="g")
    lines = fold_warnings(dataset, guarded_folds(create("splitter", "group_kfold", n_splits=3), dataset))
    assert len(lines) == 1 and lines[0].startswith("data.target: class '3' is in the valid rows of fold "), lines
    huge = data.assign(g=np.where(np.arange(len(data)) < 100, 0, np.arange(len(data))))
    sized = Dataset(huge, "y", ["radiation"], group="g")
    lines = fold_warnings(sized, guarded_folds(create("splitter", "group_kfold", n_splits=4), sized), "regression")
    assert lines == ["split: the folds' valid rows range from 6 to 100; the mean over folds weights each fold "
                     "equally (a group much larger than the others, say)"], lines
    assert fold_warnings(Dataset(frame(), "y", ["radiation"], group="g"),
                         guarded_folds(create("splitter", "group_kfold", n_splits=3),
                                       Dataset(frame(), "y", ["radiation"], group="g"))) == []
