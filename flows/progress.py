"""A terminal progress display for folds and epochs, fed by the lifecycle hooks."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from scribbles.core import (
    EpochContext,
    FoldContext,
    FoldEndContext,
    RunContext,
    RunEndContext,
    RunErrorContext,
    hookimpl,
)


class ConsoleProgress:
    """Two bars: folds done, and epochs of the current fold with its latest losses."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.folds = self.epochs = 0
        self.n_epochs = 0

    @hookimpl
    def scribbles_run_start(self, ctx: RunContext) -> None:
        if ctx.kind == "sweep":
            self.console.print(f"sweep of {ctx.tags.get('trials', '?')} trials")
            return
        if ctx.run_name:
            self.console.print(ctx.run_name)
        self.n_epochs = int(ctx.config.get("train", {}).get("epochs", 1))
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[note]}"), console=self.console, transient=True,
            # A transient display shows nothing where the console is not interactive (a pipe, a log file),
            # and rich's Progress.stop still writes an empty line there: no display at all in that case.
            disable=not self.console.is_interactive,
        )
        self.progress.start()
        self.folds = self.progress.add_task("folds", total=ctx.n_folds, note="")
        self.epochs = self.progress.add_task("epochs", total=self.n_epochs, note="")

    @hookimpl
    def scribbles_fold_start(self, ctx: FoldContext) -> None:
        if self.progress:
            self.progress.reset(self.epochs, total=self.n_epochs, note="",
                                description=f"fold {ctx.fold.index} epochs")

    @hookimpl
    def scribbles_epoch_end(self, ctx: EpochContext) -> None:
        if self.progress:
            note = "  ".join(f"{k} {v:.4f}" for k, v in ctx.metrics.items())
            self.progress.update(self.epochs, advance=1, note=note)

    @hookimpl
    def scribbles_fold_end(self, ctx: FoldEndContext) -> None:
        if self.progress:
            self.progress.update(self.folds, advance=1)

    def _stop(self) -> None:
        if self.progress:
            self.progress.stop()
            self.progress = None

    @hookimpl
    def scribbles_run_end(self, ctx: RunEndContext) -> None:
        if ctx.run.kind != "sweep":
            self._stop()

    @hookimpl
    def scribbles_run_error(self, ctx: RunErrorContext) -> None:
        self._stop()
