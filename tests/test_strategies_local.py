"""Strategies in this process: options, loss scaling, checkpoint and resume, sklearn, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import BaseModel
from scribbles.core import (
    ConfigError,
    Model,
    TrainConfig,
    create,
    hookimpl,
    load_registry,
    resolve,
)
from scribbles.core.config import parse_config
from scribbles.core.training import TorchStrategy, activation_checkpointing, seed_everything, train_epoch, train_single
from scribbles.core.training import checkpoint as checkpoints
from strategy_helpers import BASE, SPEC, TRAIN, VALID, build, loss, single, vector


class _Plugin:
    """A plugin object contributing the given technique classes."""

    def __init__(self, *classes: type) -> None:
        self.classes = classes
        self.__name__ = "test-plugin"

    @hookimpl
    def scribbles_techniques(self) -> list[type]:
        return list(self.classes)


def test_activation_checkpointing_gives_the_same_gradients_with_dropout() -> None:
    """Non-reentrant checkpointing replays the RNG: dropout masks, and so weights, are unchanged."""
    config = TrainConfig(**BASE)
    plain = vector(train_single(build(dropout=0.3), loss(), TRAIN, VALID, config).model)
    config_ac = TrainConfig(**BASE, activation_checkpointing=True)
    recomputed = vector(train_single(build(dropout=0.3), loss(), TRAIN, VALID, config_ac).model)
    torch.testing.assert_close(recomputed, plain, rtol=1e-6, atol=1e-7)


class _Stack(torch.nn.Module):
    """A small transformer stack, the shape the selective policy is for."""

    def __init__(self, dropout: float, layers: int = 3) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(
            torch.nn.TransformerEncoderLayer(16, 2, 64, dropout=dropout, batch_first=True) for _ in range(layers)
        )
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x.mean(1))


class _InPlace(torch.nn.Module):
    """A block whose contracting matmul output (which selective keeps) is then changed in place."""

    def __init__(self) -> None:
        super().__init__()
        self.down, self.out = torch.nn.Linear(32, 8), torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.down(x)
        h.mul_(2.0)  # bumps the version of the kept output: replaying it would hand back 2 * h
        return self.out(torch.tanh(h))


class _InPlaceStack(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList([_InPlace()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks[0](x)


def _gradients(model: torch.nn.Module, x: torch.Tensor, policy: str | None) -> tuple[torch.Tensor, int]:
    """Gradients after one backward pass (same seed each call) and the bytes kept for it."""
    if policy is not None:
        activation_checkpointing.enable(model, policy)  # type: ignore[arg-type]
    seed_everything(1)
    kept = activation_checkpointing.saved_bytes(lambda: model(x).sum(), model.parameters())
    seed_everything(1)
    model(x).square().sum().backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()]), kept


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_checkpointing_policies_give_the_same_gradients_on_a_transformer(dropout: float) -> None:
    """selective (attention and contracting matmul outputs kept; with dropout the attention is
    recomputed so the RNG stays in step) and full recompute both give the plain gradients, keeping
    less than no checkpointing and selective more than full."""
    x = torch.randn(4, 10, 16, generator=torch.Generator().manual_seed(0))
    results = {}
    for policy in (None, "selective", "full"):
        seed_everything(0)
        results[policy] = _gradients(_Stack(dropout), x, policy)
    for policy in ("selective", "full"):
        torch.testing.assert_close(results[policy][0], results[None][0], rtol=1e-6, atol=1e-7)
    assert results["full"][1] < results["selective"][1] < results[None][1]


def test_checkpointing_share_counts_from_the_first_block_and_never_takes_the_last() -> None:
    """full checkpoints 3/4 of the blocks by default, selective all; the last block never (backward
    needs its activations first); a lone block is checkpointed; a share out of (0, 1] is refused."""
    for policy, share, wrapped in (("full", None, 6), ("full", 0.5, 4), ("full", 1.0, 7), ("selective", None, 7)):
        stack = _Stack(0.0, layers=8)
        assert activation_checkpointing.enable(stack, policy, share) == list(stack.layers)[:wrapped]  # type: ignore[arg-type]
        assert "forward" not in vars(stack.layers[-1]) and "forward" in vars(stack.layers[0])
    lone = _InPlaceStack()
    assert activation_checkpointing.enable(lone, "full") == [lone.blocks[0]]
    with pytest.raises(ValueError, match="share"):
        activation_checkpointing.enable(_Stack(0.0), "full", 1.5)


def test_selective_recomputes_a_kept_output_changed_in_place() -> None:
    """An output modified in place after it was kept is recomputed, not handed back stale."""
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(0))
    seed_everything(0)
    plain = _gradients(_InPlaceStack(), x, None)[0]
    seed_everything(0)
    selective = _gradients(_InPlaceStack(), x, "selective")[0]
    torch.testing.assert_close(selective, plain)


def test_activation_checkpointing_config_values() -> None:
    """true means the full policy; a value that is no policy is named with the choices."""
    assert TrainConfig(activation_checkpointing=True).activation_checkpointing == "full"
    assert TrainConfig(activation_checkpointing="selective").activation_checkpointing == "selective"
    assert TrainConfig().activation_checkpointing is False
    with pytest.raises(ConfigError, match=r"train\.activation_checkpointing: .*'selective' or 'full'"):
        _config(activation_checkpointing="fast")
    with pytest.raises(ConfigError, match=r"train\.activation_checkpointing_share"):
        _config(activation_checkpointing=True, activation_checkpointing_share=1.5)


def test_grad_accumulation_matches_one_big_batch() -> None:
    """Micro-batches weighted by their share of the batch give the whole batch's mean gradient."""
    torch.testing.assert_close(single(grad_accumulation=4), single(), rtol=1e-5, atol=1e-6)


def test_fp16_scaler_skips_an_inf_step_and_halves_the_scale() -> None:
    """GradScaler: an inf gradient leaves the weights alone and halves the loss scale."""
    config = TrainConfig(**BASE, precision="fp16", device="cpu")
    strategy = TorchStrategy(torch.device("cpu"))
    strategy.setup(build(), config)
    before, scale = vector(strategy.model), strategy.scaler.get_scale()
    strategy.zero_grad()
    x, y = TRAIN[0][:8], TRAIN[1][:8]
    with torch.autocast("cpu", dtype=torch.float16):
        out = strategy.module(x)
    strategy.scaler.scale(loss()(out, (x, y)) * float("inf")).backward()
    strategy.step()
    assert torch.equal(vector(strategy.model), before)
    assert strategy.scaler.get_scale() == scale / 2
    train_epoch(strategy, loss(), *TRAIN, config, epoch=0)  # finite steps then move the weights
    assert not torch.equal(vector(strategy.model), before)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_close_to_fp32(precision: str) -> None:
    """Autocast runs the matmuls in half precision: the weights differ from the fp32 run's by half-precision
    rounding (an ignored ``train.precision`` would give fp32's weights bit for bit), and stay near them."""
    half, full = single(precision=precision), single()
    assert 1e-5 < float((half - full).norm() / full.norm()) < 0.05


def test_single_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """A run stopped after epoch 0 resumes from the atomic checkpoint and ends at the same weights."""
    config = TrainConfig(**{**BASE, "epochs": 3})
    path = tmp_path / "ck" / "checkpoint.pt"

    def stop_after_first(epoch: int, metrics: object) -> None:
        if epoch == 0:
            raise KeyboardInterrupt("stopped")

    with pytest.raises(KeyboardInterrupt):
        train_single(build(), loss(), TRAIN, VALID, config, [stop_after_first], path)
    saved = checkpoints.load(path)  # weights_only=True
    assert saved["epoch"] == 0 and len(saved["history"]) == 1
    assert not list(path.parent.glob("*.tmp"))
    seen: list[int] = []
    resumed = train_single(build(), loss(), TRAIN, VALID, config, [lambda e, m: seen.append(e)], path)
    assert seen == [0, 1, 2]
    uninterrupted = train_single(build(), loss(), TRAIN, VALID, config)
    torch.testing.assert_close(vector(resumed.model), vector(uninterrupted.model), rtol=1e-6, atol=1e-7)
    for got, expected in zip(resumed.history, uninterrupted.history, strict=True):
        assert got == pytest.approx(expected)


def test_single_strategy_removes_its_checkpoint_when_done(tmp_path: Path) -> None:
    """The strategy plugin keeps checkpoints under train.checkpoint_dir only while training."""
    config = TrainConfig(**BASE, checkpoint_dir=str(tmp_path / "ck"))
    dataset = torch.utils.data.TensorDataset(*TRAIN)
    valid = torch.utils.data.TensorDataset(*VALID)
    result = create("strategy", "single").fit(build, loss(), dataset, valid, config)
    torch.testing.assert_close(vector(result.model), single(), rtol=1e-6, atol=1e-7)
    assert list((tmp_path / "ck").glob("*")) == []


# ---------------------------------------------------------------------------- sklearn


class _LogReg(Model):
    """A classic model for the tests: scikit-learn's logistic regression."""

    name = "test_logreg"
    default_strategy = "sklearn"

    class Params(BaseModel):
        c: float = 1.0

    def build(self, spec: object) -> object:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.params.c, max_iter=500)


def _registry() -> object:
    return load_registry(autoload=False, extra_plugins=[_Plugin(_LogReg)])


def test_sklearn_strategy_fits_a_classic_model() -> None:
    """The estimator is fitted and wrapped as a module giving log-probabilities."""
    strategy = _registry().create("strategy", "sklearn")
    model = _registry().create("model", "test_logreg")
    seen: list[int] = []
    result = strategy.fit(lambda: model.build(SPEC), loss(), torch.utils.data.TensorDataset(*TRAIN),
                          torch.utils.data.TensorDataset(*VALID), TrainConfig(), [lambda e, m: seen.append(e)])
    proba = result.model(VALID[0]).exp()
    assert proba.shape == (len(VALID[0]), 3)
    np.testing.assert_allclose(proba.sum(1).numpy(), 1.0, rtol=1e-5)
    expected = result.model.estimator.predict_proba(VALID[0].numpy())
    np.testing.assert_allclose(proba.numpy(), expected, rtol=1e-4, atol=1e-6)
    assert seen == [0] and set(result.history[0]) == {"train_loss", "valid_loss"}


# ---------------------------------------------------------------------------- bad input


def _config(model: str = "mlp", **train: object) -> object:
    return parse_config({"data": {"name": "file", "path": "x.csv", "target": "y"}, "split": {"name": "kfold"},
                         "model": {"name": model}, "train": train})


@pytest.mark.parametrize(
    ("model", "train", "field", "words"),
    [
        ("mlp", {"strategy": "ddpp"}, "train.strategy", "ddp"),
        ("mlp", {"strategy": "ddp", "workers": 9, "batch_size": 8}, "train.workers", "9 workers"),
        ("test_logreg", {"strategy": "fsdp"}, "train.strategy", "classic"),
        ("mlp", {"strategy": "sklearn"}, "train.strategy", "torch model"),
        ("mlp", {"strategy": "single", "workers": 2}, "train.workers", "ddp"),
        ("mlp", {"strategy": "ddp", "nodes": 2}, "train.rdzv_endpoint", "HOST:PORT"),
        ("mlp", {"strategy": "ddp", "nodes": 2, "rdzv_endpoint": "127.0.0.1:29400"}, "train.nodes",
         "SCRIBBLES_JOB_TOKEN"),
    ],
)
def test_bad_strategy_options_are_named(model: str, train: dict, field: str, words: str) -> None:
    """Each mistake is a ConfigError naming the field, raised at resolve time."""
    with pytest.raises(ConfigError) as err:
        resolve(_config(model, **train), _registry())
    assert err.value.field == field and words in str(err.value)


def test_workers_below_one_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"train\.workers"):
        _config(workers=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_on_a_machine_without_one_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"train\.device"):
        resolve(_config(strategy="ddp", device="cuda", precision="fp16"), _registry())


def test_classic_model_defaults_to_sklearn() -> None:
    plan = resolve(_config("test_logreg"), _registry())
    assert plan.strategy.name == "sklearn"
