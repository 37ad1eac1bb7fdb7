"""`scribbles serve CONFIG (--cron EXPR | --interval SECONDS) [--overlap skip|queue]`: scheduled runs."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from scribbles.core import BadInput

from .common import EXIT_OK, console, seconds


def cmd_serve(args: argparse.Namespace) -> int:
    """Check the config as `run` does, then serve the experiment flow on its schedule until stopped."""
    from .run import checked_config

    if args.cron is not None:
        check_cron(args.cron)
    if args.promote is not None:
        from ..promote import check_alias

        check_alias(args.promote, "--promote")
    config = checked_config(args)
    when = f"on cron '{args.cron}'" if args.cron else f"every {args.interval:g} s"
    out = console()
    out.print(f"[bold]scribbles[/] serving [cyan]{config.experiment}[/] {when} (overlap: {args.overlap}); "
              "Ctrl-C or SIGTERM stops. Runs appear in MLflow (`scribbles ui`) and, with a Prefect server, "
              "in the Prefect UI.")
    from ..interrupts import Terminated, exit_code, received
    from ..lifecycle import sigterm_as_interrupt
    from ..schedule import serve

    since = time.time()
    stop: KeyboardInterrupt | None = None
    try:
        with sigterm_as_interrupt():
            serve(config, cron=args.cron, interval=args.interval, overlap=args.overlap,
                  allow_dirty=args.allow_dirty, promote=args.promote)
    except KeyboardInterrupt as exc:
        stop = exc
    # A scheduled run cut short ends KILLED in its own process (Prefect's runner stops it, and may return
    # without an exception here): say how to finish it, as `run` does.
    try:
        cut = stopped_runs(config.model_dump(mode="json"), args.allow_dirty, since)
    except Exception:  # a store that cannot be read now: the stop itself went as asked
        cut = []
    if cut:
        stop = stop or received() or KeyboardInterrupt()
        line = "stopped by SIGTERM" if isinstance(stop, Terminated) else "stopped"
        print(f"{line} serving; finish the run it stopped with `scribbles resume {cut[0]}`", file=sys.stderr)
        return exit_code(stop)
    out.print("stopped serving")
    return EXIT_OK


def stopped_runs(config: dict[str, Any], allow_dirty: bool, since: float, wait: float = 10.0) -> list[str]:
    """Ids of this schedule's parent runs started after ``since`` (seconds since the epoch) that a stop cut
    short. Each ends KILLED in its own process; one still RUNNING after ``wait`` seconds lost that process
    (Prefect's runner kills what has not exited when it shuts down), so it is ended KILLED here, its open
    fold runs with it: a stop leaves no run RUNNING."""
    from ..fold_task import plan_for

    plan, _ = plan_for(config, allow_dirty)
    deadline = time.monotonic() + wait
    for tracker in plan.trackers:
        store = tracker.store()
        if store is None:
            continue
        while True:
            runs = [r for r in store.runs(plan.experiment, record={"schedule": "*"}, limit=20)
                    if r.is_parent and r.start_time >= since * 1000 and r.status in ("KILLED", "RUNNING")]
            if not any(r.status == "RUNNING" for r in runs) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for run in runs:
            if run.status == "RUNNING":
                for fold in store.runs(plan.experiment, parent=run.run_id, status="RUNNING"):
                    store.end(fold.run_id, "KILLED")
                store.end(run.run_id, "KILLED")
        return [r.run_id for r in runs]
    return []


def check_cron(expression: str) -> None:
    """BadInput for a cron expression Prefect's scheduler would reject."""
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=expression)
    except ValueError:
        raise BadInput(f"--cron: {expression!r} is not a cron expression; five fields, e.g. --cron '0 3 * * *' "
                       "(every day at 03:00)") from None


def add_parser(verbs: Any) -> None:
    """Register `scribbles serve`."""
    serve = verbs.add_parser("serve", help="scheduled runs through Prefect")
    serve.add_argument("config", help="experiment config (YAML)")
    when = serve.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help="a cron schedule, e.g. '0 3 * * *'")
    when.add_argument("--interval", type=seconds, metavar="SECONDS", help="a run every SECONDS seconds")
    serve.add_argument("--overlap", choices=("skip", "queue"), default="skip",
                       help="a run due while the previous one still runs: skip it (default) or queue it")
    serve.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override a config value")
    serve.add_argument("--allow-dirty", action="store_true", help="run on data that differ from what DVC records")
    serve.add_argument("--promote", metavar="ALIAS",
                       help="after each run, register it under this registry alias when significantly better "
                            "than the alias's holder (see `scribbles promote`)")
    serve.set_defaults(func=cmd_serve)
