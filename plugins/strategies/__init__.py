"""Training strategies: ``single``, ``ddp``, ``zero`` (ZeRO-1), ``fsdp`` (ZeRO-3) and ``sklearn``.

The torch strategies share one training loop and differ in their ``TorchStrategy`` (both in
scribbles.core.training), which each distributed strategy's module here owns (``ddp.py``, ``zero.py``,
``fsdp.py``); they run under torch's elastic launcher (also scribbles.core.training), whose workers take
the class from the registry by the strategy's name.
``sklearn`` fits classic models (scikit-learn estimators).
"""

from __future__ import annotations

from collections.abc import Iterable

from scribbles.core import Technique, hookimpl

from .ddp import DDP
from .fsdp import FSDP
from .single import Single
from .sklearn_fit import Sklearn
from .zero import Zero


@hookimpl
def scribbles_techniques() -> Iterable[type[Technique]]:
    return [Single, DDP, Zero, FSDP, Sklearn]
