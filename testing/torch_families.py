"""The torch-side family contracts: model, loss and strategy (TTA transforms in ``tta_family``).

A model returns class logits or a mapping of named outputs holding at least ``logits`` (see
``scribbles.core.evaluation``); a classic model (an estimator with nothing to train by gradient) is
fitted through the strategy it names in ``default_strategy``; a loss reads the outputs it ``needs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from scribbles.core import ConfigError, Model, ModelSpec, Registry, TrainConfig, TrainResult, load_registry
from scribbles.core.contracts import Dataset
from scribbles.core.evaluation import LOGITS, logits_of

from .dry_run import DryRunError
from .serving import serving_problems
from .synthetic import SHAPES, synthetic_dataset

ROWS = 48
#: Rows the strategy dry runs train on; the rest of the synthetic rows validate.
TRAIN_ROWS = 36


def _call(label: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``func(*args)``, with any exception turned into a DryRunError naming the step."""
    try:
        return func(*args, **kwargs)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise DryRunError(f"{label} raised {type(exc).__name__}: {text[0] if text else ''}") from None


def spec_of(dataset: Dataset) -> ModelSpec:
    """The ModelSpec a flow would give a model for ``dataset`` (class labels as text included)."""
    return ModelSpec(dataset.kind, tuple(dataset.shape), len(dataset.classes), tuple(map(str, dataset.classes)))


def inputs_of(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised float32 inputs and int64 class positions, as the flow feeds them."""
    x = dataset.inputs()
    x = (x - x.mean()) / (x.std() or 1.0)
    return torch.from_numpy(x), torch.from_numpy(dataset.labels())


def _registry(registry: Registry | None) -> Registry:
    """``registry``, or the built-ins."""
    return registry or load_registry(autoload=False)


def _trainable(module: Any) -> bool:
    """Whether ``module`` is a torch module with a parameter to train by gradient."""
    return isinstance(module, torch.nn.Module) and any(p.requires_grad for p in module.parameters())


def _shape(value: Any) -> Any:
    """A tensor's shape, or the type name of anything else, for problem lines."""
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


# ---------------------------------------------------------------- models


def output_problems(model: Any, out: Any, spec: ModelSpec, rows: int, where: str) -> list[str]:
    """How a forward pass's ``out`` breaks the outputs contract of ``scribbles.core.evaluation``.

    ``logits`` (rows, n_classes) always; a mapping holds every name the model declares in ``outputs``,
    and the names the library knows have their documented shapes.
    """
    declared = set(model.outputs)
    problems = []
    if LOGITS not in declared:
        problems.append(f"outputs is {sorted(declared)}; it must include 'logits'")
    if isinstance(out, Mapping):
        missing = sorted(declared - set(out))
        if missing:
            return [*problems, f"{where}: outputs declares {', '.join(missing)}, but forward returned "
                               f"only {', '.join(sorted(map(str, out)))}"]
        odd = sorted(str(k) for k, v in out.items() if not isinstance(v, torch.Tensor))
        if odd:
            return [*problems, f"{where}: output {', '.join(odd)} is not a tensor"]
    elif isinstance(out, torch.Tensor):
        extra = sorted(declared - {LOGITS})
        if extra:
            problems.append(f"{where}: outputs declares {', '.join(extra)}, but forward returns a plain tensor "
                            "(logits only); return a dict of the declared outputs")
    else:
        return [*problems, f"{where}: output is {type(out).__name__}; it must be a logits tensor or a dict of "
                           "named outputs holding 'logits'"]
    logits = out.get(LOGITS) if isinstance(out, Mapping) else out
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (rows, spec.n_classes):
        got = "dict without 'logits'" if logits is None else _shape(logits)
        return [*problems, f"{where}: output is {got}; it must be (rows, n_classes) = {(rows, spec.n_classes)}"]
    if isinstance(out, Mapping):
        expected = {
            "embedding": (lambda t: t.dim() == 2 and len(t) == rows, "(rows, features)"),
            "reconstruction": (lambda t: tuple(t.shape) == (rows, math.prod(spec.input_shape)),
                               f"(rows, inputs) = {(rows, math.prod(spec.input_shape))}"),
            "objective": (lambda t: t.numel() == 1, "a scalar"),
            "steps": (lambda t: t.dim() == 3 and len(t) == rows, "(rows, steps, tokens + 1)"),
        }
        for key, (fits, wanted) in expected.items():
            if key in out and not fits(out[key]):
                problems.append(f"{where}: output '{key}' is {_shape(out[key])}; it must be {wanted}")
    tensors = out.values() if isinstance(out, Mapping) else [out]
    if not all(torch.isfinite(t.detach()).all() for t in tensors if t.is_floating_point()):
        problems.append(f"{where}: an output holds NaN or inf")
    return problems


def check_model(model: Any, workdir: Path, registry: Registry | None) -> list[str]:
    """For each data kind it takes: one score per class per row, the declared outputs, and training.

    A torch model must send a gradient to its parameters; a classic one (nothing to train by gradient,
    a scikit-learn estimator, say) is fitted on tiny data through the strategy its ``default_strategy``
    names, and the fitted model must then give class scores.
    """
    problems: list[str] = []
    if not model.kinds or not set(model.kinds) <= set(SHAPES):
        return [f"kinds is {sorted(model.kinds)}; it must name some of {', '.join(SHAPES)}"]
    for kind in sorted(model.kinds):
        dataset = synthetic_dataset(kind)
        spec = spec_of(dataset)
        x, _ = inputs_of(dataset)
        module = _call(f"build({kind} spec)", model.build, spec)
        if not _trainable(module):
            problems += _check_classic(model, kind, registry)
            continue
        module.train()
        out = _call(f"forward on {kind} inputs {tuple(x.shape)}", module, x)
        found = output_problems(model, out, spec, ROWS, kind)
        if found:
            problems += found
            continue
        logits = logits_of(out)
        if logits.requires_grad:
            logits.float().logsumexp(-1).mean().backward()
        learns = any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
        if not logits.requires_grad or not learns:
            problems.append(f"{kind}: no parameter gets a gradient; the model cannot be trained")
            continue
        problems += serving_problems(module, dataset, kind)
    return problems


def _check_classic(model: Any, kind: str, registry: Registry | None) -> list[str]:
    """A model with nothing to train by gradient, fitted through its own strategy on ``kind`` rows."""
    name = model.default_strategy
    if not name or name == "single":
        return [f"{kind}: build() gives nothing to train by gradient (an estimator?); a classic model must name "
                "the strategy that fits it in default_strategy (e.g. 'sklearn')"]
    reg = _registry(registry)
    strategy = _call(f"creating its strategy '{name}'", reg.create, "strategy", name)
    loss = reg.create("loss", "cross_entropy")
    return [f"{kind}: {p}" for p in dry_fit(strategy, model, loss, kind)]


def producer(registry: Registry | None, name: str) -> tuple[Any, str] | None:
    """A model of the registry that declares output ``name`` with its default params, and a kind it takes."""
    reg = _registry(registry)
    for info in reg.techniques("model"):
        try:
            model = reg.create("model", info.name)
        except Exception:  # a model that needs params: not a candidate
            continue
        kinds = set(model.kinds) & set(SHAPES)
        if name in set(model.outputs) and kinds:
            return model, "tabular" if "tabular" in kinds else sorted(kinds)[0]
    return None


# ---------------------------------------------------------------- losses


def synthetic_outputs(spec: ModelSpec, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Every output ``scribbles.core.evaluation`` names, for ``x``, and the leaf tensor each one's gradient reaches.

    ``objective`` is the mean squared error of ``reconstruction`` (as an autoencoder's), so its leaf is
    the reconstruction's; ``steps`` are log-probabilities over the class labels' tokens plus a blank.
    """
    generator = torch.Generator().manual_seed(0)
    flat = x.reshape(len(x), -1)
    vocabulary, _ = spec.token_sequences()
    leaves = {
        "logits": torch.randn(len(x), spec.n_classes, generator=generator),
        "embedding": torch.randn(len(x), 8, generator=generator),
        "reconstruction": flat + 0.5 * torch.randn(flat.shape, generator=generator),
        "steps": torch.randn(len(x), 4, len(vocabulary) + 1, generator=generator),
    }
    leaves = {key: value.requires_grad_() for key, value in leaves.items()}
    outputs = dict(leaves)
    outputs["objective"] = (leaves["reconstruction"] - flat).pow(2).mean()
    outputs["steps"] = leaves["steps"].log_softmax(-1)
    grads = {**leaves, "objective": leaves["reconstruction"]}
    return outputs, grads


def _value_problem(value: Any) -> str | None:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        return (f"loss(outputs, batch) returned {type(value).__name__} {getattr(value, 'shape', '')}; "
                "it must return a scalar tensor")
    if not math.isfinite(float(value.detach())):
        return f"loss(outputs, batch) is {float(value.detach())} on ordinary inputs"
    return None


def check_loss(loss: Any, workdir: Path, registry: Registry | None) -> list[str]:
    """loss(outputs, (inputs, targets)) is a finite scalar that sends a gradient to each output it ``needs``.

    The outputs are a logits tensor and a mapping of every output ``scribbles.core.evaluation`` names; a
    loss that reads logits only must give the same value on both (models may return either).
    """
    dataset = synthetic_dataset()
    spec = spec_of(dataset)
    x, y = inputs_of(dataset)
    needs = set(loss.needs)
    module = _call("build(spec)", loss.build, spec)
    outputs, leaves = synthetic_outputs(spec, x)
    unknown = sorted(needs - set(outputs))
    if unknown:
        return [f"needs the model output {', '.join(unknown)}, which scribbles.core.evaluation does not name; "
                "the kit cannot dry-run it"]
    problems: list[str] = []
    if needs == {LOGITS}:
        plain = leaves[LOGITS].detach().clone().requires_grad_()
        value = _call("loss(logits, batch)", module, plain, (x, y))
        problem = _value_problem(value)
        if problem:
            return [problem]
        value.backward()
        if plain.grad is None or not torch.isfinite(plain.grad).all() or plain.grad.abs().sum() == 0:
            return ["loss sends no finite gradient to the model's outputs"]
        hint = "read the logits with scribbles.core.evaluation.logits_of"
        try:
            mapped = module(outputs, (x, y))
        except Exception as exc:
            return [f"loss(outputs, batch) raised {type(exc).__name__} when the model returns a dict of outputs; "
                    f"{hint}"]
        if not isinstance(mapped, torch.Tensor) or not torch.allclose(mapped.detach(), value.detach()):
            problems.append(f"loss differs when the model returns a dict of outputs; {hint}")
        return problems
    value = _call("loss(outputs, batch)", module, outputs, (x, y))
    problem = _value_problem(value)
    if problem:
        return [problem]
    value.backward()
    for key in sorted(needs):
        grad = leaves[key].grad
        if grad is None or not torch.isfinite(grad).all() or grad.abs().sum() == 0:
            problems.append(f"loss sends no finite gradient to the model output '{key}', which it needs")
    return problems


# ---------------------------------------------------------------- strategies


def _companions(strategy: Any, registry: Registry | None) -> tuple[Any, Any]:
    """A model that this strategy trains (one naming it as default_strategy, else mlp) and a loss."""
    registry = _registry(registry)
    for info in registry.techniques("model"):
        if issubclass(info.cls, Model) and info.cls.default_strategy == strategy.name:
            return registry.create("model", info.name), registry.create("loss", "cross_entropy")
    return registry.create("model", "mlp", hidden=[8]), registry.create("loss", "cross_entropy")


def dry_fit(strategy: Any, model: Any, loss: Any, kind: str = "tabular") -> list[str]:
    """Fit ``model`` with ``strategy`` on tiny ``kind`` data; check the history, callbacks and trained model.

    A model with parameters to train runs ``epochs`` epochs; one with nothing to train by gradient (a
    classic estimator) is fitted in one pass, reported as epoch 0.
    """
    dataset = synthetic_dataset(kind)
    spec = spec_of(dataset)
    x, y = inputs_of(dataset)
    config = TrainConfig(epochs=2, batch_size=12, lr=0.01, device="cpu", threads=1, timeout=120)
    try:
        strategy.check(config, model)
    except ConfigError as exc:
        if exc.field != "train.workers":
            raise DryRunError(f"check() refused a plain config: {exc}") from None
        config = config.model_copy(update={"workers": 2})  # a strategy that needs several workers
        _call("check() with 2 workers", strategy.check, config, model)
    one_pass = not _trainable(_call(f"build({kind} spec)", model.build, spec))
    epochs = 1 if one_pass else config.epochs
    seen: list[tuple[int, dict[str, float]]] = []
    result = _call(
        "fit()",
        strategy.fit,
        lambda: model.build(spec),
        loss.build(spec),
        torch.utils.data.TensorDataset(x[:TRAIN_ROWS], y[:TRAIN_ROWS]),
        torch.utils.data.TensorDataset(x[TRAIN_ROWS:], y[TRAIN_ROWS:]),
        config,
        [lambda epoch, metrics: seen.append((epoch, dict(metrics)))],
    )
    if not isinstance(result, TrainResult):
        return [f"fit() returned {type(result).__name__}, not a scribbles.core.TrainResult"]
    problems = []
    if len(result.history) != epochs:
        what = "a one-pass fit (nothing trained by gradient)" if one_pass else f"{epochs} epochs"
        problems.append(f"history has {len(result.history)} entries for {what}")
    if [epoch for epoch, _ in seen] != list(range(epochs)):
        problems.append(f"callbacks saw epochs {[e for e, _ in seen]}; expected {list(range(epochs))}")
    for epoch, metrics in seen:
        for key in ("train_loss", "valid_loss"):
            if not math.isfinite(float(metrics.get(key, math.nan))):
                problems.append(f"epoch {epoch}: callback metrics lack a finite {key}")
    if result.model is None:
        problems.append("TrainResult.model is None")
    elif not isinstance(result.model, torch.nn.Module):
        problems.append(f"TrainResult.model is {type(result.model).__name__}, not a torch.nn.Module the "
                        "evaluator can call")
    else:
        valid = len(x) - TRAIN_ROWS
        with torch.no_grad():
            out = _call("the trained model", result.model.eval(), x[TRAIN_ROWS:])
        logits = out.get(LOGITS) if isinstance(out, Mapping) else out
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (valid, spec.n_classes):
            problems.append(f"the trained model gives {_shape(logits)} for {valid} rows; "
                            f"it must give (rows, n_classes) = {(valid, spec.n_classes)}")
        elif not torch.isfinite(logits).all():
            problems.append("the trained model's class scores hold NaN or inf")
        else:
            problems += serving_problems(result.model, dataset, f"{kind}, trained")
    return problems


def check_strategy(strategy: Any, workdir: Path, registry: Registry | None) -> list[str]:
    """fit() trains for ``epochs`` (a classic model: one pass), calls every callback, and returns a usable model.

    The model trained is one that names this strategy as its ``default_strategy`` (a classic model for
    ``sklearn``), else a small mlp.
    """
    model, loss = _companions(strategy, registry)
    return dry_fit(strategy, model, loss)
