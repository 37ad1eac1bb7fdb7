"""The experiment config: defaults, overrides, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from scribbles.core import ConfigError, default_registry, load_config, load_registry, resolve

REPO = Path(__file__).resolve().parents[1]

MINIMAL = "data: {name: file, path: x.csv, target: y}\nsplit: {name: kfold}\n"


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    """Only data and split are required; the rest default as DESIGN.md says."""
    config = load_config(write(tmp_path, MINIMAL, "my-exp.yaml"))
    assert config.experiment == "my-exp"
    assert config.model == {"name": "mlp"}
    assert config.loss is None  # the task's default, chosen when the config is resolved
    assert resolve(config, default_registry()).loss.name == "cross_entropy"
    assert config.evaluate.metrics is None
    assert [m.name for m in resolve(config, default_registry()).metrics] == ["accuracy"]
    assert config.tracking == [{"name": "mlflow"}]
    plan = resolve(config, load_registry(autoload=False))
    assert plan.strategy.name == "single"
    assert plan.resolved["split"] == {"name": "kfold", "n_splits": 5, "shuffle": False, "seed": 0}


def test_a_technique_may_be_given_by_its_name_alone(tmp_path: Path) -> None:
    """`model: knn`, `transforms: [hflip]`, `tracking: mlflow`: the section ``{name: ...}`` they stand for."""
    path = tmp_path / "c.yaml"
    path.write_text("data: {name: file, path: x.csv, target: y, kind: image, shape: [1, 2, 2]}\nsplit: kfold\n"
                    "model: knn\nloss: cross_entropy\n"
                    "evaluate: {tta: {transforms: [hflip, {name: vflip}]}}\ntracking: mlflow\n")
    config = load_config(path)
    assert (config.split, config.model, config.loss) == ({"name": "kfold"}, {"name": "knn"}, {"name": "cross_entropy"})
    assert config.evaluate.tta.transforms == [{"name": "hflip"}, {"name": "vflip"}]
    assert config.tracking == [{"name": "mlflow"}]
    resolve(config, default_registry())  # the names are real techniques, checked as any section is
    path.write_text("data: {name: file, path: x.csv, target: y}\nsplit: kfold\ntracking: 3\n")
    with pytest.raises(ConfigError, match="tracking"):
        load_config(path)


def test_one_technique_stands_for_a_list_of_one(tmp_path: Path) -> None:
    """`metrics: accuracy`, `transforms: hflip`, `preprocess: standard`: a list of that one, as `tracking: mlflow`."""
    path = tmp_path / "c.yaml"
    path.write_text("data: {name: file, path: x.csv, target: y, kind: image, shape: [1, 2, 2]}\nsplit: kfold\n"
                    "preprocess: standard\nevaluate: {metrics: accuracy, tta: {transforms: {name: hflip}}}\n")
    config = load_config(path)
    assert config.preprocess == ["standard"] and config.evaluate.metrics == ["accuracy"]
    assert config.evaluate.tta.transforms == [{"name": "hflip"}]


def test_set_overrides_parse_yaml_values(tmp_path: Path) -> None:
    """--set key.path=value overrides nested fields with YAML-typed values."""
    config = load_config(
        write(tmp_path, MINIMAL),
        ["train.epochs=3", "split.n_splits=4", "model.hidden=[8, 4]", "experiment=other"],
    )
    assert config.train.epochs == 3
    assert config.split["n_splits"] == 4
    assert config.model["hidden"] == [8, 4]
    assert config.experiment == "other"


def test_set_refines_a_technique_given_by_its_name(tmp_path: Path) -> None:
    """`split: kfold` + `--set split.n_splits=2` is `{name: kfold, n_splits: 2}`; so for every field that takes a
    bare name (model, loss, tracking) and for list items picked by index (preprocess, transforms, metrics)."""
    path = write(tmp_path, "data: {name: file, path: x.csv, target: y, kind: sequence, shape: [4, 2]}\n"
                 "split: kfold\nmodel: gru\nloss: cross_entropy\ntracking: mlflow\npreprocess: [standard]\n"
                 "evaluate: {tta: {transforms: [time_shift]}, metrics: [accuracy]}\n")
    config = load_config(path, ["split.n_splits=2", "model.hidden=8", "loss.label_smoothing=0.1",
                                "tracking.tracking_uri=sqlite:///x.db", "preprocess.0.columns=[a]",
                                "evaluate.tta.transforms.0.shifts=[-1, 1]", "evaluate.metrics.0=f1_macro"])
    assert config.split == {"name": "kfold", "n_splits": 2}
    assert config.model == {"name": "gru", "hidden": 8}
    assert config.loss == {"name": "cross_entropy", "label_smoothing": 0.1}
    assert config.tracking == [{"name": "mlflow", "tracking_uri": "sqlite:///x.db"}]
    assert config.preprocess == [{"name": "standard", "columns": ["a"]}]
    assert config.evaluate.tta is not None
    assert config.evaluate.tta.transforms == [{"name": "time_shift", "shifts": [-1, 1]}]
    assert config.evaluate.metrics == ["f1_macro"]
    resolve(config, default_registry())
    # A field below a plain value is still refused: only a technique's bare name stands for a section.
    with pytest.raises(ConfigError, match=r"--set data.path.x: data.path is 'x.csv', not a section"):
        load_config(path, ["data.path.x=1"])
    with pytest.raises(ConfigError, match=r"preprocess is a list of 1 item, so '2' names none; pick one by its "
                                          r"index, 0 to 0"):
        load_config(path, ["preprocess.2.columns=[a]"])


def test_set_below_a_bare_name_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`scribbles split` of a config with `split: kfold` and `--set split.n_splits=3` makes three folds."""
    import pandas as pd
    from scribbles.flows.cli import run_cli
    from scribbles.testing import synthetic_frame

    monkeypatch.chdir(tmp_path)
    synthetic_frame(rows=30).to_csv("d.csv", index=False)
    write(tmp_path, "data: {name: file, path: d.csv, target: y}\nsplit: kfold\n")
    assert run_cli(["split", "exp.yaml", "--out", "folds.csv", "--set", "split.n_splits=3"]) == 0
    assert sorted(pd.read_csv("folds.csv")["fold"].unique()) == [0, 1, 2]


def test_a_sweep_sets_fields_below_a_bare_name(tmp_path: Path) -> None:
    """A sweep's dotted paths go through the same setter: into a preprocess step given by its name."""
    from scribbles.core.sweep import trials

    config = load_config(write(tmp_path, MINIMAL + "preprocess: [standard]\n"
                               "sweep: {grid: {preprocess.0.columns: [[a], [b]], split.n_splits: [2, 3]}}\n"))
    got = [(trial.preprocess, trial.split["n_splits"]) for _, trial in trials(config)]
    assert got == [([{"name": "standard", "columns": [c]}], n) for c in "ab" for n in (2, 3)]


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        (MINIMAL + "trian: {epochs: 2}\n", [], "trian: unknown field in the top level"),
        (MINIMAL + "train: {epoch: 2}\n", [], "train.epoch: unknown field in train; known fields: strategy"),
        (MINIMAL, ["train.epochs=0"], "train.epochs: Input should be greater than or equal to 1"),
        (MINIMAL, ["train.lr=-1"], "train.lr: Input should be greater than 0"),
        (MINIMAL, ["train.precision=fp8"], "train.precision"),
        ("split: {name: kfold}\n", [], "data: required"),
        (MINIMAL, ["train.epochs"], "must look like key.path=value"),
        ("data: {path: x.csv}\nsplit: {name: kfold}\n", [], "data: needs a 'name' (the data source to use)"),
    ],
)
def test_bad_fields_are_named(tmp_path: Path, text: str, overrides: list[str], expected: str) -> None:
    """Each mistake is a ConfigError whose message names the dotted field."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), overrides)
    assert expected in str(err.value)


def test_file_problems_name_the_file(tmp_path: Path) -> None:
    """Missing, non-YAML and non-mapping files are errors that name the file."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"not valid YAML at line 2"):
        load_config(write(tmp_path, "data: [unclosed\n"))
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_resolve_checks_techniques_and_their_fields(tmp_path: Path) -> None:
    """resolve() finds unknown names, unknown technique fields and unfitting transforms."""
    registry = load_registry(autoload=False)
    cases = [
        (["model.name=mlpp"], "model: unknown model 'mlpp'; did you mean 'mlp'?"),
        (["model.width=3"], "model.width: unknown field for model 'mlp'"),
        (["split.n_splits=1"], "split.n_splits: Input should be greater than or equal to 2"),
        (["evaluate.tta={transforms: [{name: hflip}]}"], "transform 'hflip' does not fit tabular data"),
        (["model.name=gru"], "model 'gru' does not take tabular data"),
        (["train.workers=2"], "train.workers: strategy 'single' runs one process"),
        (["evaluate.metrics=[acuracy]"], "did you mean 'accuracy'"),
    ]
    for overrides, expected in cases:
        config = load_config(write(tmp_path, MINIMAL), overrides)
        with pytest.raises(ConfigError) as err:
            resolve(config, registry)
        assert expected in str(err.value), overrides


def test_shipped_configs_resolve() -> None:
    """Every config in configs/ resolves against the built-ins."""
    registry = load_registry(autoload=False)
    paths = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))
    assert len(paths) >= 3
    for path in paths:
        plan = resolve(load_config(path), registry)
        assert plan.trackers[0].name == "mlflow"


def test_set_reaches_a_sweep_key_that_is_itself_a_dotted_path() -> None:
    """README: sweeps take the same dotted paths, and `--set` reaches them: `sweep.space.train.lr` is the key
    `train.lr` of `sweep.space` (it made a nested `train: {lr: ...}` and a garbled error), and a range's own
    field can be set below it."""
    config = load_config(REPO / "configs" / "search.yaml", ["sweep.space.train.lr=[0.01, 0.1]"])
    assert config.sweep.space["train.lr"] == [0.01, 0.1] and config.sweep.space["model.hidden"] == [[8], [64]]
    config = load_config(REPO / "configs" / "search.yaml", ["sweep.space.train.lr={low: 0.001, high: 0.1}",
                                                           "sweep.space.train.lr.low=0.0001"])
    assert config.sweep.space["train.lr"].low == 0.0001 and config.sweep.space["train.lr"].high == 0.1
    config = load_config(REPO / "configs" / "activity.yaml", ["sweep.grid.model.hidden=[8, 16]"])
    assert config.sweep.grid == {"model.hidden": [8, 16]}


def test_set_below_a_strategy_given_by_name_makes_its_section(tmp_path: Path) -> None:
    """`--set train.strategy.reduce=sum` on `train: {strategy: ddp}` makes `{name: ddp, reduce: sum}`, as
    `--set split.n_splits=3` does for `split: kfold` (it was "train.strategy is 'ddp', not a section");
    the strategy then checks the field (ddp has none)."""
    path = tmp_path / "exp.yaml"
    path.write_text("data: {name: file, path: x.csv, target: y}\nsplit: kfold\ntrain: {strategy: ddp, workers: 2}\n")
    config = load_config(str(path), ["train.strategy.bucket=4"])
    assert config.train.strategy == {"name": "ddp", "bucket": 4}
    with pytest.raises(ConfigError, match=r"train\.strategy\.bucket: unknown field for strategy 'ddp'"):
        resolve(config, default_registry())
