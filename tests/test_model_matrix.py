"""Every model of the catalogue, on tiny data of every kind it takes, through what a run does after training:
evaluation without TTA, with TTA batched and in a loop, metrics, model logging, and loading the model back.

The pieces are the flow's own (``model_builder``, the model's default strategy, ``evaluate_groups``,
``tta_metrics``, ``Standardised``, the tracker's ``save_model``); the checks compare against values from
outside the code under test: scikit-learn's ``accuracy_score`` and the model's own in-memory scores.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pytorch
import numpy as np
import pytest
import torch
from scribbles.core import ModelSpec, TrainConfig, default_registry
from scribbles.core.evaluation import Standardised, evaluate_groups, tta_groups, tta_metrics
from scribbles.core.training import model_builder
from scribbles.plugins.trackers.model_log import save_model
from scribbles.testing import SHAPES, synthetic_dataset
from sklearn.metrics import accuracy_score

#: A TTA transform of each data kind, as a config would name it.
TTA = {"tabular": {"name": "noise", "std": 0.05}, "image": {"name": "hflip"},
       "sequence": {"name": "time_shift", "shifts": [-1, 1]}}
REGISTRY = default_registry()
CASES = [(name, kind) for name in REGISTRY.names("model")
         for kind in sorted(REGISTRY.create("model", name).kinds) if kind in SHAPES]


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_model_through_evaluation_tta_logging_and_loading(name: str, kind: str, tmp_path: Path) -> None:
    model = REGISTRY.create("model", name)
    dataset = synthetic_dataset(kind, rows=60)
    train_rows, valid_rows = np.arange(40), np.arange(40, 60)
    raw_train = dataset.inputs(train_rows)
    mean, std = float(raw_train.mean()), float(raw_train.std())
    x_train = torch.from_numpy((raw_train - mean) / std)
    x_valid = torch.from_numpy((dataset.inputs(valid_rows) - mean) / std)
    y_train, y_valid = torch.from_numpy(dataset.labels(train_rows)), dataset.labels(valid_rows)
    spec = ModelSpec(kind, tuple(dataset.shape), len(dataset.classes), tuple(map(str, dataset.classes)))
    config = TrainConfig(epochs=1, batch_size=16, lr=0.01, device="cpu", threads=1)
    strategy = REGISTRY.create("strategy", model.default_strategy)
    loss = REGISTRY.create("loss", "cross_entropy").build(spec)
    result = strategy.fit(model_builder(model, spec, x_train, config), loss,
                          torch.utils.data.TensorDataset(x_train, y_train),
                          torch.utils.data.TensorDataset(x_valid, torch.from_numpy(y_valid)), config)
    trained = result.model
    accuracy = REGISTRY.create("metric", "accuracy")

    plain = evaluate_groups(trained, x_valid)
    assert plain.plain.shape == (20, 3) and np.allclose(plain.plain.sum(1), 1, atol=1e-5)
    transforms = [REGISTRY.create("tta", **TTA[kind])]
    by_mode = {mode: evaluate_groups(trained, x_valid, tta_groups(transforms), chunk=8, mode=mode)
               for mode in ("batched", "loop")}
    assert np.allclose(by_mode["batched"].tta, by_mode["loop"].tta, atol=1e-5)
    assert np.allclose(by_mode["batched"].plain, plain.plain, atol=1e-5)
    metrics = tta_metrics([accuracy], y_valid, by_mode["loop"], trained, x_valid)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_valid, plain.plain.argmax(1)))
    assert metrics["accuracy_tta"] == pytest.approx(accuracy_score(y_valid, by_mode["loop"].tta.argmax(1)))

    # Logged as the flow logs it, loaded back as README says: class scores from raw, flat feature rows.
    served = Standardised(trained, mean, std, dataset.shape)
    raw_valid = np.array(dataset.inputs(valid_rows).reshape(20, -1))
    assert save_model(served, raw_valid, tmp_path / "model") == "pytorch"
    loaded = mlflow.pytorch.load_model(str(tmp_path / "model"))
    with torch.no_grad():
        scores = loaded(torch.from_numpy(raw_valid))
    assert tuple(scores.shape) == (20, 3)
    np.testing.assert_allclose(scores.softmax(-1).numpy(), plain.plain, atol=1e-5)
