"""Image transforms on (rows, channels, height, width): flips, quarter turns, shifts, pad-and-crop."""

from __future__ import annotations

import itertools
from typing import Literal, Self

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from scribbles.core import TTATransform, View

from ._params import Fill, Strict, shift_axis

IMAGE = frozenset({"image"})


class HFlip(TTATransform):
    """Mirror images left to right (one view)."""

    name = "hflip"
    kinds = IMAGE

    class Params(Strict):
        pass

    def views(self) -> list[View]:
        return [View("hflip", lambda x: x.flip(-1), lambda y: y.flip(-1))]


class VFlip(TTATransform):
    """Mirror images top to bottom (one view)."""

    name = "vflip"
    kinds = IMAGE

    class Params(Strict):
        pass

    def views(self) -> list[View]:
        return [View("vflip", lambda x: x.flip(-2), lambda y: y.flip(-2))]


class Rot90(TTATransform):
    """Turn images by each of ``k`` quarter turns (counter-clockwise); odd k needs square images."""

    name = "rot90"
    kinds = IMAGE

    class Params(Strict):
        k: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1, description="quarter turns, 1..3")

        @field_validator("k")
        @classmethod
        def _quarter_turns(cls, value: list[int]) -> list[int]:
            if any(k not in (1, 2, 3) for k in value):
                raise ValueError("each k must be 1, 2 or 3 quarter turns (0 is the identity, always included)")
            return value

    def check(self, shape: tuple[int, ...]) -> str | None:
        if any(k % 2 for k in self.params.k) and shape[-1] != shape[-2]:
            return f"odd quarter turns need square images, but rows are {shape[-2]}x{shape[-1]}; use k: [2]"
        return None

    def views(self) -> list[View]:
        return [
            View(f"rot90({k})", lambda x, k=k: x.rot90(k, (-2, -1)), lambda y, k=k: y.rot90(-k, (-2, -1)))
            for k in self.params.k
        ]


def shift_image(x: torch.Tensor, dy: int, dx: int, fill: Fill) -> torch.Tensor:
    """Move the content of (..., height, width) down by ``dy`` and right by ``dx`` pixels."""
    return shift_axis(shift_axis(x, dy, -2, fill), dx, -1, fill)


class Shift(TTATransform):
    """Move images by every (dy, dx) pixel offset of ``dy`` x ``dx`` (the identity left out)."""

    name = "shift"
    kinds = IMAGE

    class Params(Strict):
        dx: list[int] = Field(default_factory=lambda: [-1, 0, 1], min_length=1, description="pixels right")
        dy: list[int] = Field(default_factory=lambda: [-1, 0, 1], min_length=1, description="pixels down")
        fill: Fill = Field("edge", description="edge (repeat the border), zero, or wrap (roll around)")

        @model_validator(mode="after")
        def _not_only_identity(self) -> Self:
            if not [o for o in itertools.product(self.dy, self.dx) if o != (0, 0)]:
                raise ValueError("dx and dy give no offset but (0, 0), the identity; add a non-zero offset")
            return self

    def offsets(self) -> list[tuple[int, int]]:
        """The (dy, dx) offsets of the views, without duplicates or the identity."""
        pairs = itertools.product(self.params.dy, self.params.dx)
        return [o for o in dict.fromkeys(pairs) if o != (0, 0)]

    def check(self, shape: tuple[int, ...]) -> str | None:
        height, width = shape[-2], shape[-1]
        if any(abs(dy) >= height or abs(dx) >= width for dy, dx in self.offsets()):
            return (f"offsets must stay inside the {height}x{width} image (data.shape {list(shape)}: [channels, "
                    "height, width]); make them smaller, or fix data.shape")
        return None

    def views(self) -> list[View]:
        fill = self.params.fill
        return [
            View(
                f"shift({dy},{dx})",
                lambda x, dy=dy, dx=dx: shift_image(x, dy, dx, fill),
                lambda y, dy=dy, dx=dx: shift_image(y, -dy, -dx, fill),
            )
            for dy, dx in self.offsets()
        ]


Position = Literal["top_left", "top_right", "bottom_left", "bottom_right", "center"]
# Where the crop window starts in the padded image, in units of ``pad``: (row, column).
_CORNERS: dict[str, tuple[int, int]] = {
    "top_left": (0, 0), "top_right": (0, 2), "bottom_left": (2, 0), "bottom_right": (2, 2), "center": (1, 1)
}
_PAD_MODE = {"reflect": "reflect", "edge": "replicate", "zero": "constant"}


def pad_crop(x: torch.Tensor, pad: int, row: int, col: int, mode: str) -> torch.Tensor:
    """Pad (..., h, w) by ``pad`` on every side, then crop h x w starting at (row, col) of the padding."""
    height, width = x.shape[-2:]
    flat = x.reshape(-1, 1, height, width)  # F.pad's reflect wants a batch and a channel dimension
    padded = F.pad(flat, (pad, pad, pad, pad), mode=_PAD_MODE[mode])
    return padded[..., row : row + height, col : col + width].reshape(x.shape)


class Crop(TTATransform):
    """Pad by ``pad`` pixels and crop the original size at each of ``positions`` (corners by default)."""

    name = "crop"
    kinds = IMAGE

    class Params(Strict):
        pad: int = Field(1, ge=1, description="pixels of padding on each side")
        positions: list[Position] = Field(
            default_factory=lambda: ["top_left", "top_right", "bottom_left", "bottom_right"], min_length=1
        )
        mode: Literal["reflect", "edge", "zero"] = "reflect"

    def check(self, shape: tuple[int, ...]) -> str | None:
        if self.params.mode == "reflect" and self.params.pad >= min(shape[-2], shape[-1]):
            return f"reflect padding must be smaller than the image ({shape[-2]}x{shape[-1]}); lower pad"
        return None

    def views(self) -> list[View]:
        pad, mode = self.params.pad, self.params.mode
        views = []
        for position in dict.fromkeys(self.params.positions):
            row, col = (pad * u for u in _CORNERS[position])
            # The inverse moves the content back: the crop from the opposite corner.
            views.append(
                View(
                    f"crop({position})",
                    lambda x, r=row, c=col: pad_crop(x, pad, r, c, mode),
                    lambda y, r=2 * pad - row, c=2 * pad - col: pad_crop(y, pad, r, c, mode),
                )
            )
        return views
