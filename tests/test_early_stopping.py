"""train.early_stopping on every torch strategy: the same stopping epoch and weights on 1 process and on
2 real gloo workers (ddp, zero, fsdp in one launch), restore_best, and resume from a per-epoch checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from scribbles.core import TrainConfig
from scribbles.core.training import best_epoch, should_stop, train_single
from scribbles.core.training import checkpoint as checkpoints
from strategy_helpers import TRAIN, VALID, build, launch_jobs, loss, vector

#: A high learning rate on 42 rows: the validation loss turns up within a few epochs.
STOPPING = {"epochs": 40, "lr": 0.05, "early_stopping": {"patience": 2, "restore_best": True}}
BASE = {"batch_size": 8, "seed": 0}


def config(**options: object) -> TrainConfig:
    return TrainConfig(**{**BASE, **STOPPING, **options})


def test_decisions_follow_patience_and_min_delta() -> None:
    from scribbles.core.config import EarlyStoppingConfig

    history = [{"valid_loss": v} for v in (1.0, 0.8, 0.79, 0.85, 0.9)]
    assert best_epoch(history, EarlyStoppingConfig(patience=2)) == 2
    assert best_epoch(history, EarlyStoppingConfig(patience=2, min_delta=0.05)) == 1  # 0.79 is no improvement
    assert should_stop(history, EarlyStoppingConfig(patience=2)) and not should_stop(history[:4], EarlyStoppingConfig(
        patience=2))
    assert should_stop(history[:4], EarlyStoppingConfig(patience=2, min_delta=0.05))


def test_same_stop_and_weights_on_one_and_two_workers_and_after_resume(tmp_path: Path) -> None:
    one = train_single(build(), loss(), TRAIN, VALID, config())
    stopped = len(one.history)
    assert stopped < 40, "the fixture must stop early"
    best = best_epoch(one.history, config().early_stopping)
    assert best < stopped - 1  # restore_best has work to do
    # restore_best: the weights are the best epoch's, i.e. those of a run of best + 1 epochs.
    plain = train_single(build(), loss(), TRAIN, VALID, config(epochs=best + 1, early_stopping=None))
    assert torch.equal(vector(one.model), vector(plain.model))

    # Killed after an epoch past the best (its checkpoint written), then resumed from the checkpoint.
    path = tmp_path / "ckpt" / "checkpoint.pt"
    path.parent.mkdir()

    def kill(epoch: int, _: object) -> None:
        if epoch == best + 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_single(build(), loss(), TRAIN, VALID, config(), [kill], checkpoint=path)
    assert int(checkpoints.load(path)["epoch"]) == best + 1 and "best_model" in checkpoints.load(path)
    resumed = train_single(build(), loss(), TRAIN, VALID, config(), checkpoint=path)
    assert resumed.history == one.history and torch.equal(vector(resumed.model), vector(one.model))

    # Two gloo workers: ddp, zero and fsdp stop at the same epoch with the same restored weights.
    options = {**STOPPING}
    weights = launch_jobs(tmp_path, 2, {name: (name, options) for name in ("ddp", "zero", "fsdp")})
    for name, vec in weights.items():
        torch.testing.assert_close(vec, vector(one.model), rtol=1e-5, atol=1e-6, msg=name)
    for name in ("ddp", "zero", "fsdp"):
        final = checkpoints.load(tmp_path / f"w2-{name}" / "final.pt")
        assert len(final["history"]) == stopped, name
