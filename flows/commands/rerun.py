"""`scribbles rerun RUN_ID`: run again from an MLflow run's own record, as a new parent run."""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_OK, add_store_option, console, writing_to


def cmd_rerun(args: argparse.Namespace) -> int:
    """Read the run's resolved config, data version and commit; run again, recording rerun_of."""
    from ..prefect_server import started_early
    from ..rerun import prepare

    with started_early() as server:  # its start runs beside the store's reading and the data checks
        return _rerun(args, prepare(args.run_id, args.set or [], args.tracking_uri), server)


def _rerun(args: argparse.Namespace, rerun: Any, server: Any) -> int:
    """Go on with the run's record read back (``rerun.prepare``);
    ``server``: the temporary Prefect server started for it (None: a configured one)."""
    writing_to(rerun.tracking_uri)  # the new run sits beside the one it reruns
    out = console()
    out.print(f"[bold]scribbles[/] rerunning [cyan]{rerun.run_id}[/] ({rerun.config.get('experiment')})")
    for note in rerun.notes:
        out.print(f"  {note}")
    from ..experiment import experiment
    from ..lifecycle import observing
    from ..prefect_server import orchestrated
    from ..progress import ConsoleProgress
    from .run import print_results

    with orchestrated(started=server), observing(ConsoleProgress()):
        # A rerun reproduces by training again: reusing the very folds it means to check would prove nothing.
        result = experiment(rerun.config, tags=rerun.tags, force=True)
    print_results(out, result)
    return EXIT_OK


def add_parser(verbs: Any) -> None:
    """Register `scribbles rerun`."""
    rerun = verbs.add_parser("rerun", help="run again from an MLflow run's own record")
    rerun.add_argument("run_id", metavar="RUN_ID", help="the parent run (a fold run means its parent)")
    rerun.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                       help="override a recorded value, e.g. a secret the record masks (repeatable)")
    add_store_option(rerun)
    rerun.set_defaults(func=cmd_rerun)
