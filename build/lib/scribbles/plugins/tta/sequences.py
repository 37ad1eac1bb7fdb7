"""Sequence transforms on (rows, steps, channels): time shifts, amplitude scaling, time reversal."""

from __future__ import annotations

from pydantic import Field, field_validator
from scribbles.core import TTATransform, View

from ._params import Fill, Strict, shift_axis

SEQUENCE = frozenset({"sequence"})


class TimeShift(TTATransform):
    """Shift sequences in time by each of ``shifts`` steps, padding with the edge value."""

    name = "time_shift"
    kinds = SEQUENCE

    class Params(Strict):
        shifts: list[int] = Field(default_factory=lambda: [-2, 2], min_length=1)
        fill: Fill = Field("edge", description="edge (repeat the end value), zero, or wrap (roll around)")

        @field_validator("shifts")
        @classmethod
        def _not_zero(cls, value: list[int]) -> list[int]:
            if 0 in value:
                raise ValueError("a shift of 0 is the identity, which is always included; leave it out")
            return value

    def check(self, shape: tuple[int, ...]) -> str | None:
        steps = shape[0]
        if any(abs(s) >= steps for s in self.params.shifts):
            return f"shifts must be shorter than the {steps} steps of a sequence"
        return None

    def views(self) -> list[View]:
        fill = self.params.fill
        return [
            View(
                f"time_shift({s})",
                lambda x, s=s: shift_axis(x, s, 1, fill),
                lambda y, s=s: shift_axis(y, -s, 1, fill),
            )
            for s in dict.fromkeys(self.params.shifts)
        ]


class Scale(TTATransform):
    """Multiply sequences by each of ``factors`` (amplitude around the training mean)."""

    name = "scale"
    kinds = SEQUENCE

    class Params(Strict):
        factors: list[float] = Field(default_factory=lambda: [0.9, 1.1], min_length=1)

        @field_validator("factors")
        @classmethod
        def _positive(cls, value: list[float]) -> list[float]:
            if any(f <= 0 for f in value):
                raise ValueError("factors must be positive")
            return value

    def views(self) -> list[View]:
        return [View(f"scale({f:g})", lambda x, f=f: x * f) for f in dict.fromkeys(self.params.factors)]


class Reverse(TTATransform):
    """Reverse sequences in time (one view)."""

    name = "reverse"
    kinds = SEQUENCE

    class Params(Strict):
        pass

    def views(self) -> list[View]:
        return [View("reverse", lambda x: x.flip(1), lambda y: y.flip(1))]
