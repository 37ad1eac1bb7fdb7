"""Training checkpoints: written atomically every epoch, read back with ``weights_only=True``.

A checkpoint holds plain data only (tensors, numbers, strings, lists, dicts), so loading it never
runs pickled code. The format does not depend on the strategy or the world size: the full model
state_dict and the optimizer state keyed by parameter name (``torch.distributed.checkpoint``'s
"full state dict" layout), the loss scaler's state, the epoch just finished and the history so far.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig

#: Fields of ``train`` that change how a run is carried out, not what it computes.
OPERATIONAL_FIELDS = frozenset({"timeout", "restarts", "checkpoint_dir", "rdzv_endpoint", "threads", "device"})


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, flushed to disk, then renamed over ``path``.

    A reader (or a restarted worker) sees the previous checkpoint or the new one, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load(source: Path | bytes) -> dict[str, Any]:
    """A checkpoint from a file or its bytes, with ``weights_only=True`` (no code runs)."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    return torch.load(handle, map_location="cpu", weights_only=True)


def run_key(config: TrainConfig, strategy: str, *parts: Any) -> str:
    """A key for one training job: the same config, strategy, initial weights and data give the same key,
    so a retried task finds the checkpoint its earlier attempt left."""
    digest = hashlib.sha256()
    fields = {k: v for k, v in config.model_dump(mode="json").items() if k not in OPERATIONAL_FIELDS}
    digest.update(json.dumps({"strategy": strategy, "train": fields}, sort_keys=True).encode())
    for part in parts:
        if isinstance(part, torch.Tensor):
            digest.update(_bytes(part))
        elif isinstance(part, dict):
            for name, value in part.items():
                digest.update(name.encode())
                digest.update(_bytes(value))
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()[:20]


def _bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
