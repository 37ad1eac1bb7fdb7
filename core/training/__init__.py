"""Training: the torch strategy base classes, the epoch loop, the launcher and its workers, checkpoints.

``TorchStrategy`` is one process's part in training (Lightning's ``Strategy``); ``LaunchedStrategy`` the base of
strategy techniques that train here or in workers under ``torch.distributed.run``; ``train_single`` /
``train_epoch`` the epoch loop every strategy shares; ``checkpoint``, ``activation_checkpointing``, ``wire`` and
``early_stopping`` are namespaces of functions. Implementation modules (``_loop.py``, ...) are private; names
are imported on first use (PEP 562), so importing this package imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from . import _activation_checkpointing as activation_checkpointing
    from . import _checkpoint as checkpoint
    from . import _early_stopping as early_stopping
    from . import _wire as wire
    from ._checkpoint import CheckpointWarning, atomic_save, run_key
    from ._checks import check_torch
    from ._distributed import (
        Group,
        TrainingFailed,
        launcher_command,
        launcher_env,
        rendezvous_store,
        run_job,
        strategy_class,
        write_job,
    )
    from ._early_stopping import best_epoch, should_stop
    from ._job_token import job_token
    from ._launched import LaunchedStrategy, batch_split_layers, start_job, warn_batch_split
    from ._loop import train_epoch, train_single
    from ._pretraining import model_builder
    from ._recipe import rebuild
    from ._torch_strategy import TorchStrategy, state_options
    from ._training import make_optimizer, mean_loss, pick_device, seed_everything

#: Name -> the private module that defines it.
_EXPORTS: dict[str, str] = {
    "CheckpointWarning": "_checkpoint",
    "Group": "_distributed",
    "LaunchedStrategy": "_launched",
    "TorchStrategy": "_torch_strategy",
    "TrainingFailed": "_distributed",
    "atomic_save": "_checkpoint",
    "batch_split_layers": "_launched",
    "check_torch": "_checks",
    "warn_batch_split": "_launched",
    "best_epoch": "_early_stopping",
    "job_token": "_job_token",
    "launcher_command": "_distributed",
    "launcher_env": "_distributed",
    "make_optimizer": "_training",
    "mean_loss": "_training",
    "model_builder": "_pretraining",
    "pick_device": "_training",
    "rebuild": "_recipe",
    "rendezvous_store": "_distributed",
    "run_job": "_distributed",
    "run_key": "_checkpoint",
    "seed_everything": "_training",
    "should_stop": "_early_stopping",
    "start_job": "_launched",
    "state_options": "_torch_strategy",
    "strategy_class": "_distributed",
    "train_epoch": "_loop",
    "train_single": "_loop",
    "write_job": "_distributed",
}
#: Name -> a private module exported whole, as a namespace of functions.
_NAMESPACES: dict[str, str] = {
    "activation_checkpointing": "_activation_checkpointing",
    "checkpoint": "_checkpoint",
    "early_stopping": "_early_stopping",
    "wire": "_wire",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _NAMESPACES)

__all__ = [
    "CheckpointWarning",
    "Group",
    "LaunchedStrategy",
    "TorchStrategy",
    "TrainingFailed",
    "activation_checkpointing",
    "atomic_save",
    "batch_split_layers",
    "best_epoch",
    "check_torch",
    "checkpoint",
    "early_stopping",
    "job_token",
    "launcher_command",
    "launcher_env",
    "make_optimizer",
    "mean_loss",
    "model_builder",
    "pick_device",
    "rebuild",
    "rendezvous_store",
    "run_job",
    "run_key",
    "seed_everything",
    "should_stop",
    "start_job",
    "state_options",
    "strategy_class",
    "train_epoch",
    "train_single",
    "warn_batch_split",
    "wire",
    "write_job",
]
