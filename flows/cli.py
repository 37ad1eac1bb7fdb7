"""The scribbles command line. Exit codes: 0 success, 1 a failure during the run, 2 bad input.

Each verb lives in its own module under ``flows/commands`` (listed in ``COMMANDS``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from scribbles.core import BadInput, ScribblesError

from .commands import COMMANDS
from .commands.common import EXIT_BAD_INPUT, EXIT_FAILED
from .prefect_env import configure_prefect


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    parser = argparse.ArgumentParser(prog="scribbles", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.commands.{name}").add_parser(verbs)
    return parser


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the verb, and turn errors into exit codes and one-line messages."""
    configure_prefect()
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ScribblesError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print("failed: an unexpected error (traceback above); please report it", file=sys.stderr)
        return EXIT_FAILED


def main() -> None:
    """Console-script entry point."""
    code = run_cli()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything the command had to say is out. At interpreter exit Prefect stops its temporary
    # server and prints CancelledError tracebacks ("Error flushing events") while its event loop is
    # torn down; a user must never see those, so stderr goes to /dev/null for the shutdown only.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    sys.exit(code)
