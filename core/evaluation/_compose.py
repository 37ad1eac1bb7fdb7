"""``compose``: the product of several TTA transforms' views (shifts x flips, say).

A factor may also be left out, as in ttach's ``Compose`` where each transform's parameters include
"off": ``compose`` of ``shift(dx=[-1, 1])`` and ``hflip`` gives shift(-1), shift(1), hflip,
shift(-1)+hflip and shift(1)+hflip. The all-identity combination is left out because the evaluator
always adds the identity view itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..contracts import TTATransform, View


def _chain(functions: Sequence[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def run(value: Any) -> Any:
        for function in functions:
            value = function(value)
        return value

    return run


def compose_views(factors: Sequence[Sequence[View]]) -> list[View]:
    """Every combination of at most one view per factor, identity excluded, in factor order.

    A combined view applies its parts in factor order and inverts them in reverse order, so that
    ``invert(model(apply(x)))`` undoes the last transform first.
    """
    options: list[list[View | None]] = [[None, *factor] for factor in factors]
    views: list[View] = []
    for combo in itertools.product(*options):
        parts = [view for view in combo if view is not None]
        if not parts:
            continue
        if len(parts) == 1:
            views.append(parts[0])
            continue
        views.append(
            View(
                "+".join(view.name for view in parts),
                _chain([view.apply for view in parts]),
                _chain([view.invert for view in reversed(parts)]),
            )
        )
    return views


class Compose(TTATransform):
    """The product of several transforms' views; each factor may also be left out."""

    name = "compose"
    kinds = frozenset({"tabular", "sequence", "image"})  # each part checks its own kind

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        transforms: list[dict[str, Any]] = Field(min_length=2, description="the factors, {name: ..., ...}")

    def __init__(self, params: BaseModel | None = None) -> None:
        super().__init__(params)
        self.parts: list[TTATransform] = []

    def bind(self, parts: Sequence[TTATransform]) -> Compose:
        """Attach the built factors (the plan builds them through the registry and checks each)."""
        self.parts = list(parts)
        return self

    @property
    def label(self) -> str:
        """``shift_x_hflip``: the factors' names, for the per-transform breakdown."""
        return "_x_".join(part.label for part in self.parts)

    def views(self) -> list[View]:
        if not self.parts:
            raise RuntimeError("compose has no parts; build it through scribbles.core.resolve")
        return compose_views([part.views() for part in self.parts])
