"""What a model's forward pass returns, and how losses, metrics and the evaluator read it.

A model returns either a tensor of class logits, shape (rows, classes), or a mapping of named
tensors that holds at least ``"logits"``. The names a mapping may carry, each declared by the
model technique in ``Model.outputs`` so that a config asking for a missing one fails before any work:

- ``logits``          (rows, classes) class scores; the evaluator and ``cross_entropy`` read these.
- ``embedding``       (rows, features) the representation the class head sees (``supcon`` reads it).
- ``reconstruction``  (rows, inputs) the flattened, standardised inputs as the model rebuilt them
                      (``reconstruction_mse`` scores it against the inputs).
- ``objective``       a scalar: the model's own unsupervised loss on the batch (reconstruction error;
                      the negative ELBO for a VAE). The ``reconstruction`` loss and pretraining minimise it.
- ``steps``           (rows, steps, tokens + 1) per-step log-probabilities, blank last (``ctc`` reads it).

A mapping (a plain dict) rather than a custom class keeps DDP, FSDP and autocast working: torch
traverses dicts of tensors natively.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

LOGITS = "logits"


def logits_of(outputs: Any) -> torch.Tensor:
    """The class logits of a model's outputs: the tensor itself, or ``outputs["logits"]``."""
    if isinstance(outputs, Mapping):
        return outputs[LOGITS]
    return outputs


def output_of(outputs: Any, key: str, who: str) -> torch.Tensor:
    """``outputs[key]``, or a clear error naming what asked for it and what the model gave."""
    if key == LOGITS:
        return logits_of(outputs)
    if isinstance(outputs, Mapping) and key in outputs:
        return outputs[key]
    given = sorted(outputs) if isinstance(outputs, Mapping) else [LOGITS]
    raise KeyError(f"{who} needs the model output '{key}'; this model returns {', '.join(given)}")
