"""A third-party strategy that owns its mechanics trains under the launcher like a built-in one.

The example package examples/scribbles-allreduce is installed with pip into a folder of its own and
found through its entry point, by this process and by the gloo workers torch's launcher starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import run_cli
from scribbles.core import ConfigError, load_registry
from scribbles.core.training import TorchStrategy, strategy_class

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "scribbles-allreduce"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example strategy installed with pip into a folder of its own (add it to PYTHONPATH)."""
    target = tmp_path_factory.mktemp("allreduce-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(EXAMPLE)], check=True, capture_output=True)
    return target


def _env(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
            "SCRIBBLES_DISABLE_PLUGIN_AUTOLOAD": "0"}


def test_a_strategy_not_installed_is_refused_naming_the_plugin_to_install() -> None:
    registry = load_registry(autoload=False)
    with pytest.raises(ConfigError, match=r"train\.strategy: unknown strategy 'allreduce'.*install the plugin"):
        strategy_class("allreduce", registry)
    assert issubclass(strategy_class("ddp", registry), TorchStrategy)
    assert strategy_class("ddp", registry).__module__ == "scribbles.plugins.strategies.ddp"


def test_a_launched_strategy_without_its_torch_strategy_is_refused_before_work() -> None:
    from scribbles.core import Model, TrainConfig, create
    from scribbles.core.training import LaunchedStrategy

    class Forgetful(LaunchedStrategy):
        """Names no TorchStrategy."""

        name = "forgetful"

    model = create("model", "mlp")
    assert isinstance(model, Model)
    with pytest.raises(ConfigError, match=r"train\.strategy: strategy 'forgetful' .* sets no torch_strategy"):
        Forgetful().check(TrainConfig(workers=2), model)
    create("strategy", "ddp").check(TrainConfig(workers=2), model)  # a built-in names its own


def test_a_third_party_launched_strategy_gets_the_device_and_precision_checks() -> None:
    """The checks live in core's LaunchedStrategy: a plugin strategy is refused a GPU this machine lacks
    and a classic model as ddp is (it trained on the CPU, exit 0, recording device cuda)."""
    import torch
    from scribbles.core import TrainConfig, create
    from scribbles.core.training import LaunchedStrategy

    class LocalSGD(LaunchedStrategy):
        """Averages parameters every few steps."""

        name = "local_sgd"
        torch_strategy = TorchStrategy

    mlp = create("model", "mlp")
    if not torch.cuda.is_available():
        for strategy in (LocalSGD(), create("strategy", "ddp")):
            with pytest.raises(ConfigError, match=r"train\.device: cuda asked for but torch sees no CUDA GPU"):
                strategy.check(TrainConfig(workers=2, device="cuda"), mlp)
    with pytest.raises(ConfigError, match=r"train\.strategy: strategy 'local_sgd' trains torch models.*classic"):
        LocalSGD().check(TrainConfig(workers=2), create("model", "knn"))
    LocalSGD().check(TrainConfig(workers=2), mlp)


def test_layers_that_a_split_batch_changes_are_named() -> None:
    import torch
    from scribbles.core.training import batch_split_layers

    nn = torch.nn
    assert batch_split_layers(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2), nn.Dropout(0.0))) == []
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Dropout(0.1), nn.GRU(4, 4, 2, dropout=0.1))
    assert batch_split_layers(model) == ["BatchNorm1d", "Dropout", "GRU(dropout)"]
    # The warning says what the layers it names do: batch norm alone takes statistics, it draws no masks.
    import warnings

    from scribbles.core import TrainConfig
    from scribbles.core.training import warn_batch_split

    for name, layers, does in [("norm-only", nn.BatchNorm1d(4), "take batch-norm statistics per worker"),
                               ("both", model, "draw dropout masks and take batch-norm statistics per worker")]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warn_batch_split(layers, name, TrainConfig(workers=2))
        assert len(caught) == 1 and f" layers {does}, so its weights" in str(caught[0].message), caught


def test_third_party_strategy_runs_through_the_cli(site: Path, tmp_path: Path, prefect_api: str) -> None:
    """`scribbles run` with `train: {strategy: allreduce, workers: 2}`: two gloo workers take the
    example's TorchStrategy from their installed plugins (a worker that cannot find it fails the run)."""
    from scribbles.testing import synthetic_frame

    synthetic_frame("tabular", rows=40).drop(columns=["g", "t"]).to_csv(tmp_path / "rows.csv", index=False)
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({
        "experiment": "allreduce-plugin",
        "data": {"name": "file", "path": "rows.csv", "target": "y"},
        "split": {"name": "shuffle", "n_splits": 1, "test_size": 0.3},  # one fold: one launch
        "model": {"name": "mlp", "hidden": [8], "dropout": 0.2},
        # With a param: it reaches the workers' TorchStrategy (its step reads self.params.reduce).
        "train": {"epochs": 1, "batch_size": 8, "strategy": {"name": "allreduce", "reduce": "mean"}, "workers": 2},
    }))
    env = {"PYTHONPATH": _env(site)["PYTHONPATH"], "SCRIBBLES_DISABLE_PLUGIN_AUTOLOAD": "0",
           "PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    listed = run_cli("plugins", "--family", "strategy", cwd=tmp_path, env=env)
    assert listed.returncode == 0 and "scribbles-allreduce" in listed.stdout, listed.stdout + listed.stderr
    result = run_cli("run", "exp.yaml", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    typo = run_cli("run", "exp.yaml", "--set", "train.strategy.reduce=median", cwd=tmp_path, env=env)
    assert typo.returncode == 2 and typo.stderr.startswith("error: train.strategy.reduce: "), typo.stderr
    # Dropout with 2 workers breaks "W workers learn what one learns": said once, on one line.
    warned = [line for line in result.stderr.splitlines() if "per worker" in line]
    assert warned == ["warning: strategy 'allreduce' on 2 workers: the model's Dropout layers draw dropout masks "
                      "per worker, so its weights differ from one worker's (README: Training strategies)"], \
        result.stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.data.tags.get("scribbles.world_size") == "2"]
    assert parents and all(r.info.status == "FINISHED" for r in runs), [r.data.tags for r in runs]
