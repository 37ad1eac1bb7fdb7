"""Test-time augmentations (family ``tta``), one module per data kind.

images: ``hflip``, ``vflip``, ``rot90``, ``shift``, ``crop`` (pad-and-crop), ``noise``;
sequences: ``time_shift``, ``scale``, ``jitter``, ``reverse``; tabular: ``noise``; any kind:
``compose`` (the product of other transforms' views, defined in scribbles.core.evaluation).
Every view acts on a batch: images (rows, channels, height, width), sequences (rows, steps, channels),
tabular (rows, features). Transforms that move positions also ``invert`` dense outputs laid out like
the input (classes in place of channels).
"""

from __future__ import annotations

from collections.abc import Iterable

from scribbles.core import Technique, hookimpl
from scribbles.core.evaluation import Compose

from .images import Crop, HFlip, Rot90, Shift, VFlip
from .noise import Jitter, Noise
from .sequences import Reverse, Scale, TimeShift


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [HFlip, VFlip, Rot90, Shift, Crop, Noise, TimeShift, Scale, Jitter, Reverse, Compose]
