"""The TTA transform contract: views keep shape and dtype, leave their input alone, repeat, and invert.

A transform is tried on each data kind it names, at every row shape of ``TTA_SHAPES`` that its
``check(shape)`` accepts (a ``compose`` gets its parts built and checked as a run builds them, see
``scribbles.core.plan``). ``invert`` must keep the shape of dense outputs (laid out like the input,
classes in place of channels), and a view that says it inverts must put every value that ``apply``
moved back where it was: only the values a fill invented (an edge or reflected copy, a zero) may differ.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from scribbles.core import ConfigError, Registry, View, load_registry
from scribbles.core.evaluation import Compose
from scribbles.core.plan import _build_transform

from .dry_run import DryRunError
from .synthetic import SHAPES

ROWS = 48
#: Row shapes each kind is tried at: the synthetic data's first, then larger and (images) non-square ones.
TTA_SHAPES: dict[str, tuple[tuple[int, ...], ...]] = {
    "tabular": ((4,), (16,)),
    "sequence": ((8, 2), (32, 3)),
    "image": ((1, 4, 4), (3, 8, 8), (1, 4, 6)),
}


def _call(label: str, func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)``, with any exception turned into a DryRunError naming the step."""
    try:
        return func(*args)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise DryRunError(f"{label} raised {type(exc).__name__}: {text[0] if text else ''}") from None


def _dims(shape: tuple[int, ...]) -> str:
    """``1x4x4``: a row shape for problem lines."""
    return "x".join(map(str, shape))


def _claims_inverse(view: Any) -> bool:
    """Whether a view says that ``invert`` undoes ``apply`` (dense outputs aligned with the input)."""
    declared = getattr(view, "invertible", None)
    if declared is not None:
        return bool(declared)
    return type(view).invert is not View.invert or getattr(view, "_invert", None) is not None


def dense_shape(kind: str, shape: tuple[int, ...], classes: int = 3) -> tuple[int, ...] | None:
    """The shape of dense outputs for ``ROWS`` rows of ``shape``: classes in place of channels (None: tabular)."""
    if kind == "image":
        return (ROWS, classes, *shape[1:])
    if kind == "sequence":
        return (ROWS, *shape[:-1], classes)
    return None


def fitted(transform: Any, kind: str, shape: tuple[int, ...], registry: Registry) -> tuple[Any, str | None]:
    """``transform`` ready for rows of ``kind`` and ``shape``, or None and why it refuses them."""
    if isinstance(transform, Compose):
        parts = []
        for j, part in enumerate(transform.params.transforms):
            try:
                parts.append(_build_transform(registry, dict(part), f"transforms.{j}", kind, shape))
            except ConfigError as exc:
                return None, str(exc)
        return transform.bind(parts), None
    return transform, transform.check(shape)


def _repeated(values: torch.Tensor) -> torch.Tensor:
    """The values that occur more than once in ``values``."""
    distinct, counts = torch.unique(values, return_counts=True)
    return distinct[counts > 1]


def round_trip_problem(view: Any, shape: tuple[int, ...], label: str) -> str | None:
    """Why ``invert(apply(x))`` fails to put back the values ``apply`` moved, on rows of distinct values.

    A view that changes values (noise, scaling) is not a pure move, so only positions could be
    compared; it is left out. Values a fill invented, which no inverse can recover, are excused:
    those that occur twice (edge and reflect padding) and zeros.
    """
    code = torch.arange(1, ROWS * math.prod(shape) + 1, dtype=torch.float32).reshape(ROWS, *shape)
    out = _call(f"{label}: apply()", view.apply, code)
    if not isinstance(out, torch.Tensor) or out.shape != code.shape:
        return None  # reported by the shape check
    if not torch.isin(out, torch.cat([code.flatten(), torch.zeros(1)])).all():
        return None
    back = _call(f"{label}: invert()", view.invert, out)
    if not isinstance(back, torch.Tensor) or back.shape != code.shape:
        got = tuple(back.shape) if isinstance(back, torch.Tensor) else type(back).__name__
        return f"{label}: says it inverts, but invert(apply(x)) is {got}, not x's {tuple(code.shape)}"
    wrong = back != code
    invented = (back == 0) | torch.isin(back, torch.cat([_repeated(out), _repeated(back)]))
    misplaced = int((wrong & ~invented).sum())
    if misplaced:
        return (f"{label}: says it inverts, but invert(apply(x)) is not x: {misplaced} of {code.numel()} "
                "values end up away from where they started")
    if not (~wrong).reshape(ROWS, -1).any(1).all():
        return f"{label}: says it inverts, but invert(apply(x)) is not x: some rows get no value back"
    return None


def view_problems(views: list[Any], kind: str, shape: tuple[int, ...]) -> list[str]:
    """Every way ``views`` break the view contract on ``ROWS`` rows of ``kind`` data of ``shape``."""
    x = torch.randn((ROWS, *shape), generator=torch.Generator().manual_seed(0))
    original = x.clone()
    problems = []
    for view in views:
        label = f"{kind} {_dims(shape)} view {getattr(view, 'name', view)!r}"
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
        dense = dense_shape(kind, shape)
        if dense is not None:
            scores = torch.randn(dense, generator=torch.Generator().manual_seed(1))
            inverted = _call(f"{label}: invert() on dense outputs {dense}", view.invert, scores)
            if getattr(inverted, "shape", None) != scores.shape:
                problems.append(f"{label}: invert() turned dense outputs {dense} into "
                                f"{tuple(getattr(inverted, 'shape', ()))}; it must keep their shape")
        if _claims_inverse(view):
            problem = round_trip_problem(view, shape, label)
            if problem:
                problems.append(problem)
    return problems


def check_tta(transform: Any, workdir: Path, registry: Registry | None) -> list[str]:
    """Every view keeps shape and dtype, leaves its input alone, repeats, and inverts where it claims to.

    Each kind the transform names must accept one of the kit's row shapes (``check(shape)``); a
    compose, whose parts decide its kinds, must fit one kind.
    """
    if not transform.kinds or not set(transform.kinds) <= set(SHAPES):
        return [f"kinds is {sorted(transform.kinds)}; it must name the data kinds it fits ({', '.join(SHAPES)})"]
    registry = registry or load_registry(autoload=False)
    problems: list[str] = []
    refusals: list[str] = []
    tried = 0
    for kind in sorted(transform.kinds):
        ready = []
        for shape in TTA_SHAPES[kind]:
            bound, refusal = fitted(transform, kind, shape, registry)
            if refusal:
                refusals.append(f"{kind} {_dims(shape)}: {refusal}")
            else:
                ready.append((shape, bound))
        if not ready and not isinstance(transform, Compose):
            shapes = ", ".join(_dims(s) for s in TTA_SHAPES[kind])
            problems.append(f"{kind}: check() refuses every row shape the kit tries ({shapes}), e.g. "
                            f"{refusals[-1]}; give the class an `example_params` classmethod that fits one")
        for shape, bound in ready:
            tried += 1
            views = _call(f"{kind} {_dims(shape)}: views()", bound.views)
            if not views:
                problems.append(f"{kind} {_dims(shape)}: views() returned no view")
                break
            found = view_problems(views, kind, shape)
            if found:  # the same fault at the next shape would only repeat it
                problems += found
                break
    if not tried and not problems:
        problems.append(f"fits none of the kit's data: {'; '.join(refusals[:3])}")
    return problems
