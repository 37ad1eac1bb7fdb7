"""`scribbles resume RUN_ID`: finish a failed or killed run in the same parent run."""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_OK, add_store_option, console, writing_to


def cmd_resume(args: argparse.Namespace) -> int:
    """Keep the run's finished folds, train the missing ones in the same parent, end it FINISHED."""
    from ..interrupts import ended_early_as
    from ..prefect_server import started_early
    from ..resume import prepare

    with started_early() as server:  # its start runs beside the store's reading and the data checks
        resume = prepare(args.run_id, args.tracking_uri)
        # Until the flow reopens it, the run stays as its last command left it: a stop now says how to
        # finish it, as that command's did (it printed a plain `stopped`).
        ended_early_as(resume.run_id)
        return _resume(args, resume, server)


def _resume(args: argparse.Namespace, resume: Any, server: Any) -> int:
    """Go on with the stopped run read back (``resume.prepare``);
    ``server``: the temporary Prefect server started for it (None: a configured one)."""
    writing_to(resume.tracking_uri)  # the run goes on in the store that holds it
    out = console()
    out.print(f"[bold]scribbles[/] resuming [cyan]{resume.run_id}[/] ({resume.config.get('experiment')})")
    for note in resume.notes:
        out.print(f"  {note}")
    from ..experiment import experiment
    from ..lifecycle import observing
    from ..prefect_server import orchestrated
    from ..progress import ConsoleProgress
    from .run import print_results

    with orchestrated(started=server), observing(ConsoleProgress()):
        result = experiment(resume.config, resume=resume.run_id)
    print_results(out, result)
    return EXIT_OK


def add_parser(verbs: Any) -> None:
    """Register `scribbles resume`."""
    resume = verbs.add_parser("resume", help="finish a failed or killed run in the same parent run")
    resume.add_argument("run_id", metavar="RUN_ID", help="the stopped parent run (a fold run means its parent)")
    add_store_option(resume)
    resume.set_defaults(func=cmd_resume)
