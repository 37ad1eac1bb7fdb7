"""`scribbles ui`: the MLflow UI on this project's store, bound to 127.0.0.1."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

from ..prefect_server import stop, tied_to_this_process
from .common import EXIT_OK, add_store_option, port


def cmd_ui(args: argparse.Namespace) -> int:
    """Serve the MLflow UI for this project's store on 127.0.0.1."""
    from ..stores import open_store

    # A bogus URI, a corrupt store or none at all: one line now, not a server that never answers
    # (the UI only reads, so it creates no store either).
    uri = open_store(args.tracking_uri).uri
    if uri.startswith(("http://", "https://")):
        print(f"the MLflow store is a tracking server: its UI is at {uri}")
        return EXIT_OK
    print(f"MLflow UI for {uri} at http://127.0.0.1:{args.port} (Ctrl-C stops it)", flush=True)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", "127.0.0.1", "--port", str(args.port),
               # One worker serves one user; MLflow's default four took over a minute to start on 2 cores.
               "--workers", "1"]
    # MLflow's server runs in a session of its own, which this command stops with SIGTERM on Ctrl-C: the
    # terminal's SIGINT reached all of its processes, which printed nine tracebacks and took seconds to go.
    # Tied to this process, the server also ends when this command is killed.
    # MLflow's own imports warn of deprecations in its dependencies (Starlette's WSGI middleware): nothing the
    # user can act on, so not on their terminal.
    warnings = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), "ignore::DeprecationWarning",
                                      "ignore:starlette.middleware.wsgi is deprecated:UserWarning"]))
    server = subprocess.Popen(tied_to_this_process(command), start_new_session=True,
                              env={**os.environ, "PYTHONWARNINGS": warnings})
    try:
        return server.wait()  # MLflow's own exit code when it ends by itself (a port in use, say)
    finally:
        stop(server, grace=10.0)  # a stop (Ctrl-C, SIGTERM): the command then says `stopped`, exit 130/143


def add_parser(verbs: Any) -> None:
    """Register `scribbles ui`."""
    ui = verbs.add_parser("ui", help="MLflow UI on the project's store, on 127.0.0.1")
    ui.add_argument("--port", type=port, default=5000, help="port on 127.0.0.1 (1-65535)")
    add_store_option(ui)
    ui.set_defaults(func=cmd_ui)
