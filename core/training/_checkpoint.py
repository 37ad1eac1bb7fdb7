"""Training checkpoints: written atomically every epoch, read back with ``weights_only=True``.

A checkpoint holds plain data only (tensors, numbers, strings, lists, dicts), so loading it never
runs pickled code. The format does not depend on the strategy or the world size: the full model
state_dict and the optimizer state keyed by parameter name (``torch.distributed.checkpoint``'s
"full state dict" layout), the loss scaler's state, the epoch just finished and the history so far.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig, is_operational
from ..errors import ScribblesError, ScribblesWarning


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, flushed to disk, then renamed over ``path``.

    A reader (or a restarted worker) sees the previous checkpoint or the new one, never half of one.
    When the write fails (a full disk: torch reports it as a RuntimeError from its zip writer) the
    temporary file is removed and the error is one ScribblesError naming the folder and the fix.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        for attempt in range(3):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(tmp, "wb") as handle:
                    torch.save(obj, handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
                return
            except FileNotFoundError:
                # The folder went away under us: an identical job (same key, another run) finished and
                # removed it. Make it again; a third loss in a row is a real problem, reported below.
                if attempt == 2:
                    raise
    except (OSError, RuntimeError) as exc:
        _remove(tmp)
        raise ScribblesError(f"train.checkpoint_dir: cannot write the checkpoint {path} ({_reason(exc, path)}); "
                             "free space there or point train.checkpoint_dir at another disk") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _reason(exc: BaseException, path: Path) -> str:
    """Why a write failed, in words: the OS's reason, or the space left when torch hides it."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return " ".join(str(exc).split())[:120]
    return f"{free // 2**20} MiB free on that disk" if free < 2**30 else " ".join(str(exc).split())[:120]


def load(source: Path | bytes) -> dict[str, Any]:
    """A checkpoint from a file or its bytes, with ``weights_only=True`` (no code runs)."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    return torch.load(handle, map_location="cpu", weights_only=True)


def load_or_set_aside(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``; None when there is none, or when it cannot be loaded.

    A checkpoint cut short (a full disk, a machine that stopped mid-rename on a filesystem without
    atomic renames) would otherwise fail every later run of the same config. It is renamed to
    ``<name>.unloadable`` (kept for inspection, never read again) with a warning, and the fold trains
    from the start.
    """
    try:
        saved = load(path)
        if not isinstance(saved, dict) or not {"epoch", "history"} <= saved.keys():
            raise ValueError("it lacks the epoch and history a checkpoint holds")
        return saved
    except FileNotFoundError:  # none, or removed just now by an identical job that finished
        return None
    except Exception as exc:  # torch reports a damaged file in several ways (RuntimeError, EOFError, ...)
        aside = path.with_name(path.name + ".unloadable")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        warnings.warn(f"checkpoint {path} cannot be loaded ({reason}); set aside as {aside.name}, "
                      "the fold trains from the start", CheckpointWarning, stacklevel=2)
        return None


class CheckpointWarning(ScribblesWarning):
    """A checkpoint was set aside; training starts over."""


def run_key(config: TrainConfig, strategy: str, *parts: Any) -> str:
    """A key for one training job: the same config, strategy, initial weights and data give the same key,
    so a retried task finds the checkpoint its earlier attempt left."""
    digest = hashlib.sha256()
    fields = {k: v for k, v in config.model_dump(mode="json").items() if not is_operational(f"train.{k}")}
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
