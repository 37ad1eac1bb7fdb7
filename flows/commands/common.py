"""What every verb shares: exit codes, the console, and argument checks that run before any work."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from scribbles.core import BadInput

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
#: The console's width when stdout is a file or a pipe and ``COLUMNS`` is not set: wider than any line
#: the verbs print, so that no table cell is cut to ``…`` (rich assumes 80 columns there).
REDIRECTED_WIDTH = 4096


def console() -> Any:
    """A rich console on stdout (imported lazily: `scribbles --help` stays fast).

    On a terminal it takes the terminal's width; redirected to a file or a pipe it is
    ``REDIRECTED_WIDTH`` wide (tables keep their natural width, nothing is truncated) unless
    ``COLUMNS`` says otherwise.
    """
    from rich.console import Console

    out = Console()
    if out.is_terminal or os.environ.get("COLUMNS", "").strip().isdigit():
        return out
    return Console(width=REDIRECTED_WIDTH)


def port(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a port number; give 1 to 65535") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port; give 1 to 65535")
    return value


def seconds(text: str) -> float:
    """An argparse type: a finite, positive number of seconds (``nan`` and ``inf`` are not)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a number of seconds, e.g. 3600") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text[:20]} must be a finite, positive number of seconds, e.g. 3600")
    return value


def count(minimum: int) -> Any:
    """An argparse type: an integer of at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
        return value

    parse.__name__ = f"count >= {minimum}"
    return parse


def writable_file(path: Path, field: str) -> None:
    """BadInput unless a file can be written at ``path``: checked before any work, probing with a file
    that is never visible (``TemporaryFile``), so nothing is left behind.
    """
    if path.is_dir():
        raise BadInput(f"{field}: {path} is a directory; give a file name like folds.csv")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise BadInput(f"{field}: directory {directory} does not exist; create it or pick another path")
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise BadInput(f"{field}: cannot write in {directory} ({exc.strerror or exc}); pick another path") from None


def add_store_option(parser: Any) -> None:
    """``--tracking-uri``: the store to read runs from, when not the one a run was written to."""
    parser.add_argument("--tracking-uri", metavar="URI", default=None,
                        help="the MLflow store to read runs from (default: the store each run was written to, "
                             "as `scribbles run` noted in .scribbles/stores.tsv, else MLFLOW_TRACKING_URI or "
                             "./mlflow.db)")


def writing_to(uri: str) -> None:
    """Runs started from now on, by this process and the workers it starts, go to the store ``uri``
    (a config's own ``tracking_uri`` still wins)."""
    import os

    if uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri
