"""The scribbles command line. Exit codes: 0 success, 1 a failure during the run, 2 bad input.

Each verb lives in its own module under ``flows/commands`` (listed in ``COMMANDS``).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from scribbles.core import BadInput, ScribblesError
from scribbles.core.errors import ScribblesWarning
from scribbles.core.redact import mask_output, mask_text
from scribbles.core.registry import STRICT_ENV

from .commands import COMMANDS
from .commands.common import EXIT_BAD_INPUT, EXIT_FAILED
from .interrupts import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Terminated,
    ended_early,
    exit_code,
    interruption,
    stops_noted,
)
from .prefect_env import configure_prefect
from .settings import apply_settings


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit code 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message}; see `{self.prog} --help`\n")


#: The longest error line printed: a terminal's screenful.
MAX_LINE = 1000

STRICT_HELP = "a plugin that fails to load is an error, not a warning (or SCRIBBLES_STRICT_PLUGINS=1)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    parser = Parser(prog="scribbles", description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help=STRICT_HELP)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.commands.{name}").add_parser(verbs)
    for verb in verbs.choices.values():
        # `scribbles run X --strict` as well as `scribbles --strict run X`; SUPPRESS keeps the global value.
        verb.add_argument("--strict", action="store_true", default=argparse.SUPPRESS, help=STRICT_HELP)
    return parser


def one_line(exc: BaseException) -> str:
    """The error's message on one line (a library's multi-line reason included), secrets masked, at most
    MAX_LINE long."""
    line = mask_text("; ".join(part.strip() for part in str(exc).splitlines() if part.strip()))
    # Messages clip what they quote; this is the last guard against a library quoting a whole input.
    return line if len(line) <= MAX_LINE else f"{line[: MAX_LINE - 20]} ... ({len(line)} characters)"


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    """scribbles' own warnings as one ``warning:`` line; every other warning as Python writes it."""
    if issubclass(category, ScribblesWarning):
        return f"warning: {message}\n"
    return _python_format(message, category, filename, lineno, line)


_python_format = warnings.formatwarning


def _shown_once(show: Callable[..., None]) -> Callable[..., None]:
    """``show`` (``warnings.showwarning``) for each warning once per command: the same category, text and
    line again is not shown.

    Python shows a warning once per line per process until any ``warnings.catch_warnings()`` block ends,
    which forgets what was shown. The libraries a run calls open such blocks in every fold (and MLflow's in
    the tracker's thread, at moments that vary), so a plugin's warning showed once per fold, or five
    times in one run and six in the next, and another number when a fold worker trained the folds.
    """
    seen: set[tuple[str, str, str, int]] = set()

    def once(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             *rest: Any, **more: Any) -> None:
        key = (category.__name__, str(message), filename, lineno)
        if key not in seen:
            seen.add(key)
            show(message, category, filename, lineno, *rest, **more)

    return once


def run_cli(argv: Sequence[str] | None = None, process_ends: bool = False) -> int:
    """Parse ``argv``, run the verb, and turn errors into exit codes and one-line messages.

    ``process_ends``: the process ends with the command (the console script), so what the command froze
    out of garbage collection (``gc.freeze``) stays frozen; a caller that goes on (a test) gets it back.
    """
    # First: every line this process (and the libraries it loads) prints passes the secret mask.
    mask_output()
    try:  # scribbles.toml: the team's servers, as the environment variables each tool reads
        apply_settings()
    except BadInput as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    configure_prefect()
    warnings.formatwarning = _format_warning
    shown = warnings.showwarning
    warnings.showwarning = _shown_once(shown)
    args = build_parser().parse_args(argv)
    if args.strict:
        os.environ[STRICT_ENV] = "1"  # also reaches the processes a run starts (DDP workers)
    func: Callable[[argparse.Namespace], int] = args.func
    args.process_ends = process_ends
    # SIGTERM anywhere in the command (not only while runs are open) ends it like Ctrl-C, with 143; both
    # are noted, so that a stop a library turned into an error of its own is still told as a stop.
    try:
        with stops_noted():
            return _run(func, args)
    finally:
        warnings.formatwarning = _python_format
        warnings.showwarning = shown


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run the verb; errors become exit codes and one-line messages.

    A stopped run's line gives the command that finishes it, with its run id; a failure's message that
    says ``scribbles resume RUN_ID`` gets the id too.
    """
    ended_early(clear=True)
    try:
        return func(args)
    except BadInput as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ScribblesError as exc:
        print(f"failed: {with_run_id(one_line(exc), ended_early())}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        _stopped(exc)
        return exit_code(exc)
    except Exception as exc:
        stop = interruption(exc)  # a stop that surfaced as another error (an import it cut short)
        if stop is not None:
            _stopped(stop)
            return exit_code(stop)
        print(f"failed: {_unexpected(exc)}", file=sys.stderr)
        return EXIT_FAILED


#: Where the traceback of an installed plugin's error is kept (the terminal gets one line).
PLUGIN_ERROR_LOG = Path(".scribbles") / "plugin-error.log"


def _unexpected(exc: BaseException) -> str:
    """Whose bug an unexpected error is, as the ``failed:`` line's text. An installed plugin's: named with
    its distribution and line and how to leave it out, its traceback (masked) kept in ``PLUGIN_ERROR_LOG``
    for its authors. Else scribbles': the traceback is printed above, to report."""
    from scribbles.core.registry import raised_in_plugin

    found = raised_in_plugin(exc)
    if found is None:
        traceback.print_exc()
        return "an unexpected error (traceback above); please report it"
    dist, where = found
    text = one_line(exc) or type(exc).__name__
    text = text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"
    try:
        PLUGIN_ERROR_LOG.parent.mkdir(parents=True, exist_ok=True)
        PLUGIN_ERROR_LOG.write_text(mask_text("".join(traceback.format_exception(exc))))
        kept = f"traceback in {PLUGIN_ERROR_LOG}"
    except OSError:  # a read-only project: the terminal is the only place left
        traceback.print_exc()
        kept = "traceback above"
    return (f"plugin {dist} raised {text} ({where}; {kept}); report it to the plugin's authors, "
            f"or leave it out with `plugins: {{deny: [{dist}]}}`")


#: What a failure's advice to resume says instead when the command failed before any run was made.
NO_RUN_YET = {
    ", then `scribbles resume RUN_ID` finishes the run": ", then run the command again (no run to finish)",
    "; its runs ended FAILED; finish them with `scribbles resume RUN_ID`": "; no run to finish: run the command again",
}


def with_run_id(message: str, run_id: str | None) -> str:
    """``message`` with the id of the run the command ended in place of ``RUN_ID``; with no run made yet
    (the store failed before its first write, say), the advice to resume becomes advice to run again."""
    if run_id:
        return message.replace("RUN_ID", run_id)
    for resume, again in NO_RUN_YET.items():
        message = message.replace(resume, again)
    return message


def _stopped(stop: BaseException) -> None:
    """The one line of a stopped command: how it stopped and, when it left a run KILLED, how to finish it."""
    line = "stopped by SIGTERM" if isinstance(stop, Terminated) else "stopped"
    run_id = ended_early()
    print(f"{line}; finish the run with `scribbles resume {run_id}`" if run_id else line, file=sys.stderr)


def main() -> None:
    """The command, once imported (the console script enters through ``flows/entry.py``)."""
    code = run_cli(process_ends=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything the command had to say is out. At interpreter exit Prefect stops its temporary
    # server and prints CancelledError tracebacks ("Error flushing events") while its event loop is
    # torn down; a user must never see those, so stderr goes to /dev/null for the shutdown only.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        # Stopped: the runs are ended and said so. Prefect's exit handlers would spend seconds flushing
        # events to its API for a run that is over; a stop must take effect within seconds.
        os._exit(code)
    # The exit handlers (Prefect's, logging's, temporary folders') still run; what is frozen is left out of
    # the interpreter's last garbage collections, which took seconds over the objects a run's libraries
    # (torch, Prefect, MLflow) hold, after the results were printed (bench/overhead.py).
    gc.freeze()
    sys.exit(code)
