"""The kit's check of what a run does with a model after training: TTA evaluation, model logging, loading.

A model that trains but cannot be evaluated with TTA (batched and loop) or saved and loaded back as
MLflow's ``pytorch`` flavour would fail a run at its last step; the kit makes it fail the check instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scribbles.core import Dataset
from scribbles.core.contracts import View
from scribbles.core.evaluation import Standardised, evaluate_groups, logits_of

#: A view every kind takes: a small shift of the standardised inputs (its inverse is the identity).
KIT_VIEW = View("kit_offset", lambda batch: batch + 0.05)


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def tta_problems(module: torch.nn.Module, x: torch.Tensor, n_classes: int, label: str) -> list[str]:
    """Plain and TTA probabilities in both evaluation modes: (rows, n_classes), finite, rows summing to 1,
    and the same in ``batched`` and ``loop`` mode."""
    results = {}
    for mode in ("batched", "loop"):
        try:
            results[mode] = evaluate_groups(module, x, [("kit", [KIT_VIEW])], "mean", chunk=16, mode=mode)
        except Exception as exc:
            return [f"{label}: TTA evaluation ({mode}) raised {_first(exc)}"]
    for mode, result in results.items():
        for name, probs in (("plain", result.plain), ("TTA", result.tta)):
            if probs.shape != (len(x), n_classes):
                return [f"{label}: {name} probabilities ({mode}) are {probs.shape}; expected {(len(x), n_classes)}"]
            if not np.isfinite(probs).all() or not np.allclose(probs.sum(1), 1.0, atol=1e-4):
                return [f"{label}: {name} probabilities ({mode}) are not finite rows summing to 1"]
    if not np.allclose(results["batched"].tta, results["loop"].tta, atol=1e-4):
        return [f"{label}: batched and loop TTA disagree; a model must score each row on its own"]
    return []


def logging_problems(module: torch.nn.Module, dataset: Dataset, label: str) -> list[str]:
    """Saved as the flow saves it (``Standardised`` on raw flat rows, MLflow ``pytorch`` flavour) and loaded
    back with ``mlflow.pytorch.load_model``: the same class scores, (rows, n_classes), from raw rows."""
    import mlflow.pytorch
    from scribbles.plugins.trackers.model_log import save_model

    raw = dataset.inputs()
    mean, std = float(raw.mean()), float(raw.std()) or 1.0
    served = Standardised(module, mean, std, dataset.shape).eval()
    flat = torch.from_numpy(np.array(raw.reshape(len(raw), -1)))
    n_classes = len(dataset.classes)
    with tempfile.TemporaryDirectory(prefix="scribbles-kit-model-") as tmp:
        try:
            save_model(served, flat.numpy()[:5], Path(tmp) / "model")
        except Exception as exc:
            return [f"{label}: logging the model (MLflow pytorch flavour) raised {_first(exc)}"]
        try:
            loaded = mlflow.pytorch.load_model(str(Path(tmp) / "model"))
        except Exception as exc:
            return [f"{label}: loading the logged model back raised {_first(exc)}"]
    with torch.no_grad():
        expected = logits_of(served(flat))
        try:
            got = loaded(flat)
        except Exception as exc:
            return [f"{label}: the loaded model raised {_first(exc)} on raw feature rows"]
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != (len(flat), n_classes):
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return [f"{label}: the loaded model gives {shape} on raw rows; expected class scores {(len(flat), n_classes)}"]
    if not torch.allclose(got, expected, atol=1e-5, equal_nan=False):
        return [f"{label}: the loaded model's class scores differ from the trained model's"]
    return []


def serving_problems(module: Any, dataset: Dataset, label: str) -> list[str]:
    """``tta_problems`` on the standardised inputs, then ``logging_problems``; the model is left in eval mode."""
    if not isinstance(module, torch.nn.Module):
        return []  # reported by the caller: the evaluator needs a torch module
    raw = dataset.inputs()
    x = torch.from_numpy((raw - raw.mean()) / (raw.std() or 1.0))
    module.eval()
    n_classes = len(dataset.classes)
    return tta_problems(module, x, n_classes, label) or logging_problems(module, dataset, label)
