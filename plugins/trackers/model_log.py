"""A fold's trained model saved in an MLflow flavour, with its signature and an input example.

torch modules use the ``pytorch`` flavour, scikit-learn estimators the ``sklearn`` one. Both are
saved to a folder that the tracker uploads as the run's ``model`` artifact: no fluent (active-run)
API, so several trackers and threads never share MLflow's global state.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

#: Rows kept as the input example: enough to show the shape, small enough to stay cheap.
EXAMPLE_ROWS = 5


def _requirements(*names: str) -> list[str]:
    # Given explicitly: MLflow's own inference loads the model in a subprocess (seconds per model).
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def flavour_of(model: Any) -> str | None:
    """``pytorch``, ``sklearn``, or None for a model neither flavour can save."""
    import torch

    if isinstance(model, torch.nn.Module):
        return "pytorch"
    if hasattr(model, "fit") and hasattr(model, "predict"):
        return "sklearn"
    return None


def save_model(model: Any, input_example: Any, path: Path) -> str | None:
    """Save ``model`` to ``path`` in its flavour; return the flavour, or None when it has none."""
    from mlflow.models import infer_signature

    flavour = flavour_of(model)
    if flavour is None:
        return None
    example = np.asarray(input_example)[:EXAMPLE_ROWS]
    if flavour == "pytorch":
        import mlflow.pytorch
        import torch

        with torch.no_grad():
            output = model(torch.as_tensor(example)).numpy()
        # Pickle, not MLflow's default torch.export ("pt2"): exporting a small GRU took 9-18 s per
        # fold here, as long as training it. Loading needs scribbles installed (the model classes).
        logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)  # the pickle-format warning, per model
        mlflow.pytorch.save_model(
            model, str(path), signature=infer_signature(example, output), input_example=example,
            pip_requirements=_requirements("torch", "scribbles"), serialization_format="pickle",
        )
        return flavour
    import mlflow.sklearn

    example = example.reshape(len(example), -1)
    mlflow.sklearn.save_model(
        model, str(path), signature=infer_signature(example, model.predict(example)), input_example=example,
        pip_requirements=_requirements("scikit-learn", "scribbles"),
    )
    return flavour
