"""The technique catalogue through the real flow: every model on its demo config, CTC, supcon, VAE, diagnose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import make_dvc_project, run_cli, work_in
from mlflow.tracking import MlflowClient
from scribbles.core import BadInput, ConfigError, default_registry, load_config, resolve
from scribbles.flows.experiment import experiment

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: Every model the catalogue adds, and the demo config of the data kind it is shown on.
DEMO_CONFIG = {
    "mlp": "activity-mlp",
    "gru": "activity",
    "cnn1d": "activity",
    "gru_attention": "activity",
    "transformer_encoder": "activity-transformer",
    "autoencoder": "digits-vae",
    "vae": "digits-vae",
    "knn": "activity-knn",
    "svm": "activity-knn",
    "decision_tree": "activity-knn",
    "gaussian_mixture": "activity-knn",
}
#: The MLflow tracker stays on: model logging is part of every run a user makes.
FAST = ("train.epochs=1", "split.n_splits=2")


@pytest.fixture(scope="module")
def sequences_small():
    """Every 4th row of the sequence-labelling variant of the activity set."""
    from scribbles.flows.demo_data import build_activity_sequences

    return build_activity_sequences().iloc[::4].reset_index(drop=True)


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory: pytest.TempPathFactory, activity_small, digits_small, sequences_small) -> Path:
    """One git + DVC project with small slices of the demo sets, shared by this module's tests."""
    return make_dvc_project(tmp_path_factory.mktemp("catalogue") / "proj", {
        "activity.csv": activity_small, "digits.csv": digits_small, "activity_sequences.csv": sequences_small,
    })


@pytest.fixture
def project(dvc_project: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: str) -> Path:
    """The shared project as the working directory, with its own MLflow store."""
    return work_in(dvc_project, monkeypatch)


def config_for(name: str, *overrides: str) -> dict:
    return load_config(CONFIGS / f"{name}.yaml", list(overrides)).model_dump(mode="json")


def test_every_catalogue_technique_is_registered() -> None:
    registry = default_registry()
    assert set(DEMO_CONFIG) <= set(registry.names("model"))
    assert {"cross_entropy", "supcon", "ctc", "reconstruction"} <= set(registry.names("loss"))
    assert {"accuracy", "f1_macro", "log_loss", "reconstruction_mse"} <= set(registry.names("metric"))
    assert "sklearn" in registry.names("strategy")


def majority_baseline(config: dict) -> float:
    """Mean accuracy of scikit-learn's DummyClassifier (most frequent class) on the config's own folds."""
    from scribbles.flows import fold_task
    from sklearn.dummy import DummyClassifier

    ready = fold_task.prepare(config, False)
    y = ready.dataset.labels()
    scores = [DummyClassifier(strategy="most_frequent").fit(np.zeros((len(f.train), 1)), y[f.train])
              .score(np.zeros((len(f.valid), 1)), y[f.valid]) for f in ready.folds]
    return float(np.mean(scores))


@pytest.mark.parametrize("model", sorted(DEMO_CONFIG))
def test_each_model_trains_one_epoch_on_its_demo_config(project: Path, model: str) -> None:
    """The model with its default parameters, through the real flow (tracker and model logging on), on the
    demo data of its kind: the run FINISHES with a loadable model and beats the majority-class baseline."""
    config = config_for(DEMO_CONFIG[model], *FAST, f"model={{name: {model}}}")
    result = experiment(config)
    # One epoch (or one fit) must beat always answering the most frequent class on the same folds.
    assert result["summary"]["accuracy_mean"] > majority_baseline(config)
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    parent = client.get_run(result["links"]["mlflow_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["scribbles.model_fold"] == "1"
    assert any(a.path == "model/MLmodel" for a in client.list_artifacts(parent.info.run_id, "model"))


@pytest.mark.parametrize(("model", "config"), [("mlp", "digits"), ("autoencoder", "activity"), ("knn", "digits"),
                                               ("vae", "activity-mlp"), ("decision_tree", "activity")])
def test_flattening_models_take_every_kind(project: Path, model: str, config: str) -> None:
    """Models that flatten their inputs work with defaults on tabular, sequence and image data."""
    settings = config_for(config, *FAST, f"model={{name: {model}}}", "loss={name: cross_entropy}",
                          "evaluate.tta=null", "train.strategy=null")
    result = experiment(settings)
    assert result["summary"]["accuracy_mean"] > majority_baseline(settings)


def test_ctc_labels_activity_sequences(project: Path, sequences_small) -> None:
    """CTC on windows whose target is their sequence of activities; accuracy is exact-sequence accuracy."""
    result = experiment(config_for("activity-ctc", "train.epochs=10", "split.n_splits=2", "tracking=[]"))
    counts = sequences_small["activities"].value_counts()
    assert len(counts) == 25  # 5 single activities and their 20 ordered pairs
    # Well above always answering the most frequent sequence.
    assert result["summary"]["accuracy_mean"] > 2 * counts.iloc[0] / counts.sum(), result["summary"]


def test_supcon_transformer_and_vae_demos(project: Path) -> None:
    """The transformer with supcon and the VAE with reconstruction loss report their metrics."""
    transformer = experiment(config_for("activity-transformer", "train.epochs=2", "split.n_splits=2",
                                        "tracking=[]"))
    assert transformer["summary"]["accuracy_mean"] > 0.3
    vae = experiment(config_for("digits-vae", "train.epochs=10", "train.batch_size=32", "split.n_splits=2",
                                "tracking=[]"))
    summary = vae["summary"]
    assert summary["accuracy_mean"] > 0.5
    # Standardised inputs have unit variance: a reconstruction that learned nothing scores about 1.
    assert 0 < summary["reconstruction_mse_mean"] < 0.9
    assert summary["reconstruction_mse_tta_mean"] == summary["reconstruction_mse_mean"]


@pytest.mark.parametrize(("overrides", "message"), [
    (("loss={name: supcon}",), "reads the model output 'embedding'"),
    (("evaluate.metrics=[reconstruction_mse]",), "reads the model output 'reconstruction'"),
    (("loss={name: ctc}", "model={name: cnn1d}"), "reads the model output 'steps'"),
    (("train.strategy=sklearn",), "strategy 'sklearn' fits classic models"),
    (("model={name: knn}", "train.strategy=single"), "trained by strategy sklearn"),
    (("model={name: transformer_encoder, d_model: 30, heads: 4}",), "not divisible by 4 heads"),
])
def test_mismatched_techniques_are_config_errors(overrides: tuple[str, ...], message: str) -> None:
    """A loss or metric that reads an output the model lacks fails before any work, naming both."""
    with pytest.raises(ConfigError, match=message):
        resolve(load_config(CONFIGS / "activity.yaml", list(overrides)), default_registry())


def test_diagnose_high_variance_then_high_bias(project: Path) -> None:
    """Small fractions of the activity MLP: high variance; a one-unit MLP: high bias. Logged to MLflow."""
    from scribbles.flows.learning_curve import diagnose

    overrides = ("split.n_splits=3", "train.epochs=30")
    variance = diagnose(config_for("activity-mlp", *overrides), [0.1, 0.2, 0.4], 2)
    bias = diagnose(config_for("activity-mlp", *overrides, "model.hidden=[1]", "experiment=tiny"),
                    [0.25, 0.5, 1.0], 2)
    print("high variance curve:", json.dumps(variance["points"]))
    print("high bias curve:", json.dumps(bias["points"]))
    assert variance["verdict"] == "high variance", variance["points"]
    assert bias["verdict"] == "high bias", bias["points"]
    end = bias["points"][-1]
    assert end["train_error"] > 0.2

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    run = client.get_run(variance["links"]["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "diagnose"
    assert run.data.tags["scribbles.diagnosis"] == "high variance"
    assert run.data.metrics["valid_error"] == pytest.approx(variance["points"][-1]["valid_error"])
    assert {"learning_curve.png", "learning_curve.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def test_diagnose_cli_bad_input_exits_2(project: Path) -> None:
    """Bad fractions are refused before any work: exit 2, one line naming the option."""
    from scribbles.flows.commands.diagnose import parse_fractions

    result = run_cli("diagnose", str(CONFIGS / "activity-mlp.yaml"), "--fractions", "0,2", cwd=project)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--fractions" in result.stderr
    with pytest.raises(BadInput, match="--fractions"):
        parse_fractions("a,b")
    assert parse_fractions("0.5,0.1,1") == [0.5, 0.1, 1.0]


def test_plugins_json_lists_the_catalogue(project: Path) -> None:
    result = run_cli("plugins", "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    names = {(r["family"], r["name"]) for r in json.loads(result.stdout)}
    expected = {("model", m) for m in DEMO_CONFIG} | {("loss", n) for n in ("supcon", "ctc", "reconstruction")}
    expected |= {("metric", "log_loss"), ("metric", "reconstruction_mse"), ("strategy", "sklearn")}
    assert expected <= names
