"""Every hook of the ``scribbles`` project, grouped by phase.

Lifecycle hooks are called on the global-zero rank only, with one keyword-only context object.
Their order across plugins is never relied on: sequencing lives in the flows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .markers import hookspec

if TYPE_CHECKING:
    from .context import (
        EpochContext,
        FoldContext,
        FoldEndContext,
        RunContext,
        RunEndContext,
        RunErrorContext,
    )
    from .contracts import Technique

# ---------------------------------------------------------------- contribution


@hookspec
def scribbles_techniques() -> Iterable[type[Technique]]:
    """Return the technique classes this plugin contributes (classes, not instances).

    Every result is collected; the registry refuses a (family, name) pair given twice.
    """


# ---------------------------------------------------------------- lifecycle


@hookspec
def scribbles_run_start(ctx: RunContext) -> None:
    """An experiment run starts; every later hook of this run gets the same ``ctx.run``."""


@hookspec
def scribbles_fold_start(ctx: FoldContext) -> None:
    """A fold passed the leakage guard and is about to train."""


@hookspec
def scribbles_epoch_end(ctx: EpochContext) -> None:
    """A training epoch ended; ``ctx.metrics`` holds train_loss and valid_loss."""


@hookspec
def scribbles_fold_end(ctx: FoldEndContext) -> None:
    """A fold finished training and evaluation."""


@hookspec
def scribbles_run_end(ctx: RunEndContext) -> None:
    """The run finished successfully; always paired with ``scribbles_run_start``."""


@hookspec
def scribbles_run_error(ctx: RunErrorContext) -> None:
    """The run failed or was stopped; called instead of ``scribbles_run_end``."""
