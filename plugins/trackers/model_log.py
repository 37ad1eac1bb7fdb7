"""A fold's trained model saved in MLflow's ``pytorch`` flavour, with its signature and an input example.

The flow hands every model over as a torch module that takes raw feature rows and returns class scores
(``scribbles.core.evaluation.Standardised``); classic models (k-NN, SVM, trees) are inside it as an
``EstimatorModule``, so they load the same way. The model is saved to a folder that the tracker uploads
as a run's ``model`` artifact: no fluent (active-run) API, so several trackers and threads never share
MLflow's global state.
"""

from __future__ import annotations

import logging
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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


class _PipelineScores:
    """MLflow pyfunc wrapper of a ``PipelineModel``: raw feature columns (a DataFrame) in, class scores out."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.model.scores(model_input)


def _save_pipeline(model: Any, input_example: Any, path: Path) -> str:
    """A ``PipelineModel`` (one-hot preprocessing) as an MLflow ``pyfunc`` model taking the raw columns."""
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    # Integer columns as floats: a missing value at serving time is then a NaN the pipeline imputes, not a
    # schema error (MLflow's hint, printed once per fold otherwise).
    example = input_example.iloc[:EXAMPLE_ROWS].copy()
    for column in example.columns:
        if pd.api.types.is_integer_dtype(example[column]):
            example[column] = example[column].astype("float64")
    # MLflow warns, per model, that a Python object is cloudpickled and that predict has no type hints: both
    # are how this flavour works; the warning lines would repeat once per fold in the user's output.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)

        class Scores(_PipelineScores, mlflow.pyfunc.PythonModel):  # defined here: MLflow warns at definition
            pass

        mlflow.pyfunc.save_model(
            str(path), python_model=Scores(model), input_example=example,
            signature=infer_signature(example, model.scores(example)),
            pip_requirements=_requirements("torch", "scikit-learn", "scribbles"),
        )
    return "pyfunc"


def save_model(model: Any, input_example: Any, path: Path) -> str | None:
    """Save a torch ``model`` to ``path`` in the ``pytorch`` flavour; return the flavour, or None when
    ``model`` is not a torch module (nothing is written then).

    ``input_example``: raw feature rows, (rows, n_features); the first ``EXAMPLE_ROWS`` are kept. The
    signature is inferred from them and the model's class scores (rows, classes).
    """
    import torch
    from scribbles.core.data import PipelineModel

    if isinstance(model, PipelineModel):
        return _save_pipeline(model, input_example, path)
    if not isinstance(model, torch.nn.Module):
        return None
    import mlflow.pytorch
    from mlflow.models import infer_signature
    from scribbles.core.evaluation import logits_of

    example = np.array(input_example, dtype=np.float32)[:EXAMPLE_ROWS]  # a writable copy for torch
    with torch.no_grad():
        output = logits_of(model(torch.as_tensor(example))).numpy()
    # Pickle, not MLflow's default torch.export ("pt2"): exporting a small GRU took 9-18 s per
    # fold here, as long as training it. Loading needs scribbles installed (the model classes).
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)  # the pickle-format warning, per model
    mlflow.pytorch.save_model(
        model, str(path), signature=infer_signature(example, output), input_example=example,
        pip_requirements=_requirements("torch", "scribbles"), serialization_format="pickle",
    )
    return "pytorch"
