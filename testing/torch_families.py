"""The torch-side family contracts: model, loss, strategy and TTA transform."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from scribbles.core import ConfigError, ModelSpec, Registry, TrainConfig, TrainResult, View, load_registry
from scribbles.core.contracts import Dataset

from .kit import DryRunError
from .synthetic import SHAPES, synthetic_dataset

ROWS = 48


def _call(label: str, func: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise DryRunError(f"{label} raised {type(exc).__name__}: {text[0] if text else ''}") from None


def spec_of(dataset: Dataset) -> ModelSpec:
    """The ModelSpec a flow would give a model for ``dataset``."""
    return ModelSpec(dataset.kind, tuple(dataset.shape), len(dataset.classes))


def inputs_of(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised float32 inputs and int64 class positions, as the flow feeds them."""
    x = dataset.inputs()
    x = (x - x.mean()) / (x.std() or 1.0)
    return torch.from_numpy(x), torch.from_numpy(dataset.labels())


def check_model(model: Any, workdir: Path, registry: Registry | None) -> list[str]:
    """For each data kind it takes: build(spec) gives one score per class per row, and gradients flow."""
    problems: list[str] = []
    if not model.kinds or not set(model.kinds) <= set(SHAPES):
        return [f"kinds is {sorted(model.kinds)}; it must name some of {', '.join(SHAPES)}"]
    for kind in sorted(model.kinds):
        dataset = synthetic_dataset(kind)
        spec = spec_of(dataset)
        x, y = inputs_of(dataset)
        module = _call(f"build({kind} spec)", model.build, spec)
        if isinstance(module, torch.nn.Module):
            module.train()
            out = _call(f"forward on {kind} inputs {tuple(x.shape)}", module, x)
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != (ROWS, spec.n_classes):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                problems.append(f"{kind}: output is {shape}; it must be (rows, n_classes) = {(ROWS, spec.n_classes)}")
                continue
            if not torch.isfinite(out).all():
                problems.append(f"{kind}: output holds NaN or inf")
                continue
            if out.requires_grad:
                out.float().logsumexp(-1).mean().backward()
            learns = any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
            if not out.requires_grad or not learns:
                problems.append(f"{kind}: no parameter gets a gradient; the model cannot be trained")
        elif hasattr(module, "fit") and hasattr(module, "predict_proba"):
            flat = x.reshape(len(x), -1).numpy()
            _call(f"{kind}: fit()", module.fit, flat, y.numpy())
            proba = _call(f"{kind}: predict_proba()", module.predict_proba, flat)
            if getattr(proba, "shape", None) != (ROWS, spec.n_classes):
                problems.append(f"{kind}: predict_proba gave {getattr(proba, 'shape', proba)}, "
                                f"not (rows, n_classes) = {(ROWS, spec.n_classes)}")
        else:
            problems.append(f"build() returned {type(module).__name__}: neither a torch.nn.Module nor an "
                            "estimator with fit() and predict_proba()")
    return problems


def check_loss(loss: Any, workdir: Path, registry: Registry | None) -> list[str]:
    """loss(outputs, (inputs, targets)) is a finite scalar that sends a gradient to the outputs."""
    dataset = synthetic_dataset()
    spec = spec_of(dataset)
    x, y = inputs_of(dataset)
    module = _call("build(spec)", loss.build, spec)
    logits = torch.randn(ROWS, spec.n_classes, generator=torch.Generator().manual_seed(0), requires_grad=True)
    value = _call("loss(outputs, batch)", module, logits, (x, y))
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        return [f"loss(outputs, batch) returned {type(value).__name__} {getattr(value, 'shape', '')}; "
                "it must return a scalar tensor"]
    if not math.isfinite(float(value.detach())):
        return [f"loss(outputs, batch) is {float(value.detach())} on ordinary inputs"]
    value.backward()
    if logits.grad is None or not torch.isfinite(logits.grad).all() or logits.grad.abs().sum() == 0:
        return ["loss sends no finite gradient to the model's outputs"]
    return []


def _companions(strategy: Any, registry: Registry | None) -> tuple[Any, Any]:
    """A model that this strategy trains (one naming it as default_strategy, else mlp) and a loss."""
    registry = registry or load_registry(autoload=False)
    for info in registry.techniques("model"):
        if getattr(info.cls, "default_strategy", None) == strategy.name:
            return registry.create("model", info.name), registry.create("loss", "cross_entropy")
    return registry.create("model", "mlp", hidden=[8]), registry.create("loss", "cross_entropy")


def check_strategy(strategy: Any, workdir: Path, registry: Registry | None) -> list[str]:
    """fit() trains for ``epochs``, calls every callback once an epoch, and returns a usable model."""
    dataset = synthetic_dataset()
    model, loss = _companions(strategy, registry)
    spec = spec_of(dataset)
    x, y = inputs_of(dataset)
    config = TrainConfig(epochs=2, batch_size=12, lr=0.01, device="cpu", threads=1, timeout=120)
    check = getattr(strategy, "check", None)
    if check is not None:
        try:
            check(config, model)
        except ConfigError as exc:
            if exc.field != "train.workers":
                raise DryRunError(f"check() refused a plain config: {exc}") from None
            config = config.model_copy(update={"workers": 2})  # a strategy that needs several workers
            _call("check() with 2 workers", check, config, model)
    seen: list[tuple[int, dict[str, float]]] = []
    result = _call(
        "fit()",
        strategy.fit,
        lambda: model.build(spec),
        loss.build(spec),
        torch.utils.data.TensorDataset(x[:36], y[:36]),
        torch.utils.data.TensorDataset(x[36:], y[36:]),
        config,
        [lambda epoch, metrics: seen.append((epoch, dict(metrics)))],
    )
    if not isinstance(result, TrainResult):
        return [f"fit() returned {type(result).__name__}, not a scribbles.core.TrainResult"]
    problems = []
    if len(result.history) != config.epochs:
        problems.append(f"history has {len(result.history)} entries for {config.epochs} epochs")
    if [epoch for epoch, _ in seen] != list(range(config.epochs)):
        problems.append(f"callbacks saw epochs {[e for e, _ in seen]}; expected {list(range(config.epochs))}")
    for epoch, metrics in seen:
        for key in ("train_loss", "valid_loss"):
            if not math.isfinite(float(metrics.get(key, math.nan))):
                problems.append(f"epoch {epoch}: callback metrics lack a finite {key}")
    if result.model is None:
        problems.append("TrainResult.model is None")
    elif isinstance(result.model, torch.nn.Module):
        with torch.no_grad():
            out = _call("the trained model", result.model.eval(), x[36:])
        if tuple(out.shape) != (len(x) - 36, spec.n_classes):
            problems.append(f"the trained model gives {tuple(out.shape)} for {len(x) - 36} rows")
    return problems


def _claims_inverse(view: Any) -> bool:
    """Whether a view says that ``invert`` undoes ``apply`` (dense outputs aligned with the input)."""
    declared = getattr(view, "invertible", None)
    if declared is not None:
        return bool(declared)
    return type(view).invert is not View.invert or getattr(view, "_invert", None) is not None


def check_tta(transform: Any, workdir: Path, registry: Registry | None) -> list[str]:
    """Every view keeps shape and dtype, leaves its input alone, repeats, and inverts where it claims to."""
    if not transform.kinds or not set(transform.kinds) <= set(SHAPES):
        return [f"kinds is {sorted(transform.kinds)}; it must name the data kinds it fits ({', '.join(SHAPES)})"]
    views = _call("views()", transform.views)
    if not views:
        return ["views() returned no view"]
    problems = []
    for kind in sorted(transform.kinds):
        x, _ = inputs_of(synthetic_dataset(kind))
        original = x.clone()
        for view in views:
            label = f"{kind} view {getattr(view, 'name', view)!r}"
            if not callable(getattr(view, "apply", None)) or not callable(getattr(view, "invert", None)):
                problems.append(f"{label}: a view needs apply() and invert() (use scribbles.core.View)")
                continue
            out = _call(f"{label}: apply()", view.apply, x)
            if not torch.equal(x, original):
                problems.append(f"{label}: apply() changed its input in place")
                x = original.clone()
            if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype:
                got = (tuple(out.shape), out.dtype) if isinstance(out, torch.Tensor) else type(out).__name__
                problems.append(f"{label}: apply() gave {got}; it must keep shape {tuple(x.shape)} and {x.dtype}")
                continue
            if not torch.equal(out, view.apply(x)):
                problems.append(f"{label}: apply() is not deterministic")
            scores = torch.randn(len(x), 3, generator=torch.Generator().manual_seed(1))
            inverted = _call(f"{label}: invert() on class scores", view.invert, scores)
            if getattr(inverted, "shape", None) != scores.shape:
                problems.append(f"{label}: invert() changed the shape of class scores")
            if _claims_inverse(view):
                back = _call(f"{label}: invert()", view.invert, out)
                if getattr(back, "shape", None) != x.shape or not torch.allclose(back, x, atol=1e-5):
                    problems.append(f"{label}: says it inverts, but invert(apply(x)) is not x")
    return problems
