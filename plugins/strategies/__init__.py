"""Training strategies: ``single``, ``ddp``, ``zero`` (ZeRO-1), ``fsdp`` (ZeRO-3) and ``sklearn``.

The torch strategies share one training loop (scribbles.core.loop) and differ in their engine
(scribbles.core.parallel); the distributed ones run under torch's elastic launcher
(scribbles.core.distributed). ``sklearn`` fits classic models (scikit-learn estimators).
"""

from __future__ import annotations

from collections.abc import Iterable

from scribbles.core import Technique, hookimpl

from .launched import DDP, FSDP, Zero
from .single import Single
from .sklearn_fit import Sklearn


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [Single, DDP, Zero, FSDP, Sklearn]
