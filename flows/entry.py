"""The `scribbles` command's entry point: a stop while the command is still importing is a stop too.

The command installs its own SIGINT and SIGTERM handling (``cli.stops_noted``) once its modules are
imported, a fraction of a second in; a Ctrl-C before that printed a KeyboardInterrupt traceback from inside
pydantic, and a SIGTERM ended it without a word. Nothing has started by then, so such a stop prints its
one line and exits at once (130, 143).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, NoReturn


def main() -> None:
    """Console-script entry point (``scribbles``): ``cli.main`` once its imports are done."""
    signal.signal(signal.SIGTERM, _terminated)  # the command's own handling replaces it while a verb runs
    try:
        from .cli import main as command

        command()
    except KeyboardInterrupt:  # before the verb's own handling (it reports the stops it sees itself)
        _stop("stopped", 130)


def _terminated(signum: int, frame: Any) -> NoReturn:
    _stop("stopped by SIGTERM", 143)


def _stop(line: str, code: int) -> NoReturn:
    print(line, file=sys.stderr, flush=True)
    os._exit(code)
