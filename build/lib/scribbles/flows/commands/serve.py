"""`scribbles serve CONFIG (--cron EXPR | --interval SECONDS) [--overlap skip|queue]`: scheduled runs."""

from __future__ import annotations

import argparse
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
    from ..lifecycle import sigterm_as_interrupt
    from ..schedule import serve

    try:
        with sigterm_as_interrupt():
            serve(config, cron=args.cron, interval=args.interval, overlap=args.overlap,
                  allow_dirty=args.allow_dirty, promote=args.promote)
    except KeyboardInterrupt:
        pass
    out.print("stopped serving")
    return EXIT_OK


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
