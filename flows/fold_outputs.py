"""What a train-fold task leaves for the flow: tensors, JSON and (for scikit-learn) a skops file.

The task may run in another process or on another machine (a process pool, a Dask worker), so its
outputs are read back without unpickling anything: tensors with ``weights_only=True``, the model
rebuilt from its technique's recipe (``core.recipe``) on the flow's own installed techniques, and a
fitted scikit-learn estimator through skops, which loads only types it trusts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scribbles.core import Registry
from scribbles.core.contracts import RECIPE_ATTRIBUTE as ATTRIBUTE
from scribbles.core.data import Fitted, served
from scribbles.core.evaluation import EstimatorModule
from scribbles.core.training import rebuild

#: Modules whose classes a fitted estimator may be made of; anything else is refused when read back.
#: scribbles' own classic models (the Gaussian-mixture classifier) are code this process already runs, and
#: skops restores them from their state without calling anything else.
TRUSTED_MODULES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.", "scribbles.plugins.models.")


def write_outputs(base: Path, model: Any, serving: dict[str, Any] | None, example: Any,
                  y_true: np.ndarray, y_pred: np.ndarray, fitted: Fitted | None = None) -> Path:
    """``base``.pt (tensors), ``base``.json (the recipe) and, for an estimator, ``base``.skops.

    ``serving``: plain values (see ``FoldInputs.serving``) of the wrapper a torch model is read back in, so
    that the logged model takes raw feature columns; None leaves the model as it is. ``fitted``: a
    preprocessing pipeline that is not column-wise (one-hot), kept as ``base``.pipeline.skops with its
    column list; ``example`` is then a DataFrame of raw columns, kept as JSON.
    """
    base.parent.mkdir(parents=True, exist_ok=True)
    estimator = model.estimator if isinstance(model, EstimatorModule) else \
        model if not isinstance(model, torch.nn.Module) else None
    frame = example if isinstance(example, pd.DataFrame) else None
    # Copies (np.array): a Parquet file's columns are read-only arrays, which torch warns about on each fold.
    tensors: dict[str, Any] = {"input_example": torch.as_tensor(np.array(example if frame is None else [])),
                               "y_true": torch.as_tensor(np.array(y_true)),
                               "y_pred": torch.as_tensor(np.array(y_pred))}
    if isinstance(model, torch.nn.Module):
        tensors["state"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if estimator is not None or fitted is not None:
        # Only here: importing skops imports every scikit-learn module to list the types it trusts,
        # 2-12 s that a torch model without a one-hot pipeline has no use for (py-spy, a 2-fold run).
        import skops.io

        if estimator is not None:
            base.with_suffix(".skops").write_bytes(skops.io.dumps(estimator))
        if fitted is not None:
            base.with_suffix(".pipeline.skops").write_bytes(skops.io.dumps(fitted.pipeline))
    torch.save(tensors, base.with_suffix(".pt"))
    meta = {"recipe": getattr(model, ATTRIBUTE, None), "module": isinstance(model, torch.nn.Module),
            "estimator": estimator is not None, "serving": serving,
            "pipeline": {"features": fitted.features, "keeps_columns": fitted.keeps_columns} if fitted else None,
            "example_frame": frame.to_dict(orient="split") if frame is not None else None}
    base.with_suffix(".json").write_text(json.dumps(meta))
    return base.with_suffix(".pt")


def model_modules(registry: Registry) -> tuple[str, ...]:
    """``TRUSTED_MODULES`` and the module of every installed model technique (a plugin's classic model is
    code this process already runs, as scribbles' own are), as prefixes of type names."""
    installed = {info.target.split(":")[0] + "." for info in registry.techniques("model")}
    return TRUSTED_MODULES + tuple(sorted(installed))


def _estimator(path: Path, trusted: tuple[str, ...] = TRUSTED_MODULES) -> Any:
    import skops.io

    data = path.read_bytes()
    untrusted = skops.io.get_untrusted_types(data=data)
    refused = [t for t in untrusted if not t.startswith(trusted)]
    if refused:
        raise ValueError(f"{path.name} holds types outside scikit-learn, numpy, scipy and installed models: "
                         f"{', '.join(refused)}")
    return skops.io.loads(data, trusted=untrusted)


def read_outputs(path: str | None, registry: Registry) -> dict[str, Any]:
    """The model, input example, targets and predictions a task left (empty when it left none).

    A model that cannot be rebuilt here (no recipe, an untrusted estimator type) is left out with a
    warning; the fold's metrics do not depend on it.
    """
    if not path or not Path(path).exists():
        return {}
    base = Path(path)
    tensors = torch.load(base, map_location="cpu", weights_only=True)
    meta = json.loads(base.with_suffix(".json").read_text())
    out: dict[str, Any] = {k: tensors[k].numpy() for k in ("input_example", "y_true", "y_pred")}
    if meta.get("example_frame"):
        out["input_example"] = pd.DataFrame(**meta["example_frame"])
    try:
        model = _model(base, meta, tensors, registry)
    except Exception as exc:  # a plugin's model that cannot be made again here: keep the metrics
        print(f"warning: fold model {base.stem} not kept: {type(exc).__name__}: {exc}", file=sys.stderr)
        model = None
    if model is not None:
        out["model"] = model
    return out


def _model(base: Path, meta: dict[str, Any], tensors: dict[str, Any], registry: Registry) -> Any:
    estimator = _estimator(base.with_suffix(".skops"), model_modules(registry)) if meta.get("estimator") else None
    if not meta.get("module"):
        return estimator
    if meta.get("recipe") is None:
        raise ValueError("the module was not built by a model technique's build(spec)")
    module = rebuild(meta["recipe"], registry)
    if estimator is not None:
        module.estimator = estimator
    module.load_state_dict(tensors["state"])
    module.eval()
    serving = meta.get("serving")
    if not serving:
        return module
    fitted = None
    if meta.get("pipeline"):
        pipeline = _estimator(base.with_suffix(".pipeline.skops"))
        fitted = Fitted(pipeline, meta["pipeline"]["features"], meta["pipeline"]["keeps_columns"])
    model = served(module, serving, fitted)
    return model.eval() if isinstance(model, torch.nn.Module) else model
