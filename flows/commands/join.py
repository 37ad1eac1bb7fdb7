"""`scribbles join HOST:PORT`: add this machine's workers to the training jobs of a flow running elsewhere.

Runs torch's elastic agent (``torch.distributed.run``) against the c10d rendezvous at HOST:PORT, the
``train.rdzv_endpoint`` of the machine running the flow (with ``train.nodes`` > 1). The job itself
(technique names, config, weights, data) comes over the process group as JSON and tensors, so this
machine needs scribbles and the same plugins installed but no copy of the data. Every machine must
hold the same job token (``SCRIBBLES_JOB_TOKEN``): a job is accepted only from, and with, ranks that
prove they hold it. One job is one fold: the agent joins again for the next, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import time
from typing import Any

from scribbles.core import BadInput

from .common import EXIT_FAILED, EXIT_OK, count, seconds


def cmd_join(args: argparse.Namespace) -> int:
    """Serve training jobs at HOST:PORT until interrupted (or ``--jobs`` have finished)."""
    from scribbles.core.training import job_token, launcher_command, launcher_env

    match = re.fullmatch(r"([^:\s]+):(\d{1,5})", args.endpoint)
    if not match or not 1 <= int(match[2]) <= 65535:
        raise BadInput(f"join: {args.endpoint[:80]!r} is not HOST:PORT with a port of 1 to 65535 "
                       "(the train.rdzv_endpoint of the flow's machine)")
    job_token("join")
    command = launcher_command(["--timeout", str(args.timeout), "--device", args.device], args.workers,
                               nodes=args.nodes, endpoint=args.endpoint, restarts=args.restarts,
                               local_addr=args.local_addr)
    done = failures = 0
    print(f"joining {args.endpoint} with {args.workers} worker(s); Ctrl-C stops", flush=True)
    try:
        while args.jobs == 0 or done < args.jobs:
            code = subprocess.run(command, env=launcher_env()).returncode
            if code == 0:
                done, failures = done + 1, 0
                print(f"job {done} finished", flush=True)
                continue
            failures += 1
            if args.max_failures and failures >= args.max_failures:
                print(f"failed: {failures} attempts in a row to join {args.endpoint} failed", flush=True)
                return EXIT_FAILED
            time.sleep(1.0)  # the flow's machine is between jobs (or not up yet): join again
    except KeyboardInterrupt:
        print("stopped", flush=True)
    return EXIT_OK


def add_parser(verbs: Any) -> None:
    """Register `scribbles join`."""
    join = verbs.add_parser("join", help="add this machine's workers to a training job")
    join.add_argument("endpoint", metavar="HOST:PORT", help="the train.rdzv_endpoint of the flow's machine")
    join.add_argument("--workers", type=count(1), default=1, help="worker processes on this machine")
    join.add_argument("--nodes", type=count(2), default=2, help="machines in the job, the flow's train.nodes")
    join.add_argument("--timeout", type=seconds, default=1800.0, help="seconds before a stalled collective fails")
    join.add_argument("--local-addr", default=None,
                      help="the address of this machine the others reach its workers at (default: host name's)")
    join.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    join.add_argument("--restarts", type=count(0), default=2, help="restarts of failed workers (as train.restarts)")
    join.add_argument("--jobs", type=count(0), default=0, help="stop after this many jobs (0: serve until Ctrl-C)")
    join.add_argument("--max-failures", type=count(0), default=0,
                      help="give up after this many failed joins in a row (0: keep trying)")
    join.set_defaults(func=cmd_join)
