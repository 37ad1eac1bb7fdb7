"""The ``scribbles`` command line. Exit codes: 0 success, 1 a failure during the run, 2 bad input."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scribbles.core import BadInput, ScribblesError

from .prefect_env import configure_prefect

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _console() -> Any:
    from rich.console import Console

    return Console()


# ---------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    """Run the experiment flow and print the results table."""
    from scribbles.core import default_registry, load_config, resolve

    config = load_config(args.config, args.set or [])
    registry = default_registry()
    if config.plugins.deny:
        from scribbles.core import load_registry

        registry = load_registry(deny=config.plugins.deny)
    resolve(config, registry)  # every config error before Prefect starts or any work is done
    console = _console()
    console.print(f"[bold]scribbles[/] running [cyan]{config.experiment}[/] from {args.config}")
    from .experiment import experiment, observing
    from .progress import ConsoleProgress

    with observing(ConsoleProgress()):
        result = experiment(config.model_dump(mode="json"))
    print_results(console, result)
    return EXIT_OK


def print_results(console: Any, result: dict[str, Any]) -> None:
    """The per-fold table with mean and std, plus where to find the run in MLflow."""
    from rich.table import Table

    metrics = result["metrics"]
    table = Table(title=f"{result['experiment']}  (data {result['data_version'][:12]})")
    table.add_column("fold", justify="right")
    for name in metrics:
        table.add_column(name, justify="right")
        table.add_column(f"{name} (TTA)", justify="right")
    for fold in result["folds"]:
        cells = [f"{fold[n]:.4f}" for name in metrics for n in (name, f"{name}_tta")]
        table.add_row(str(fold["fold"]), *cells)
    summary = result["summary"]
    cells = [
        f"{summary[f'{n}_mean']:.4f} ± {summary[f'{n}_std']:.4f}"
        for name in metrics
        for n in (name, f"{name}_tta")
    ]
    table.add_row("mean ± std", *cells, style="bold")
    console.print(table)
    for name in metrics:
        gain = summary[f"{name}_tta_mean"] - summary[f"{name}_mean"]
        console.print(f"TTA gain on {name}: {gain:+.4f}")
    links = result.get("links", {})
    if "mlflow_run_id" in links:
        console.print(
            f"MLflow parent run {links['mlflow_run_id']} in {links.get('mlflow_tracking_uri', '')}\n"
            f"Open the MLflow UI with [bold]scribbles ui[/] (or `.venv/bin/scribbles ui`), "
            f"then browse to http://127.0.0.1:5000"
        )


# ---------------------------------------------------------------- data


def cmd_data(args: argparse.Namespace) -> int:
    """Build the demo datasets, or say whether data/ matches data.dvc."""
    from .data_store import build, describe_status, status

    root = Path.cwd()
    if args.action == "build":
        written = build(root, force=args.force)
        print(f"built {', '.join(written)}" if written else "data/ already built")
        print("data/ is in DVC's cache; `scribbles data status` checks it against data.dvc")
        return EXIT_OK
    changes = status(root)
    if not changes:
        print("data/ matches data.dvc: up to date")
        return EXIT_OK
    print("data/ does not match data.dvc:")
    for line in describe_status(changes):
        print(f"  {line}")
    print("fix: `scribbles data build` (demo data), `dvc checkout` (tracked version) or `dvc add data`")
    return EXIT_FAILED


# ---------------------------------------------------------------- plugins


def cmd_plugins(args: argparse.Namespace) -> int:
    """List every technique: family, name, provider, summary."""
    from scribbles.core import FAMILIES, default_registry

    if args.family and args.family not in FAMILIES:
        raise BadInput(f"--family: unknown family '{args.family}'; families: {', '.join(FAMILIES)}")
    registry = default_registry()
    infos = registry.techniques(args.family)
    if args.json:
        rows = [
            {"family": i.family, "name": i.name, "provider": i.provider, "summary": i.cls.summary()}
            for i in infos
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    from rich.table import Table

    table = Table("family", "name", "provider", "summary")
    for info in infos:
        table.add_row(info.family, info.name, info.provider, info.cls.summary())
    _console().print(table)
    return EXIT_OK


# ---------------------------------------------------------------- ui


def cmd_ui(args: argparse.Namespace) -> int:
    """Serve the MLflow UI for this project's store on 127.0.0.1."""
    from scribbles.plugins.trackers import tracking_uri

    uri = tracking_uri()
    print(f"MLflow UI for {uri} at http://127.0.0.1:{args.port} (Ctrl-C stops it)")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", "127.0.0.1", "--port", str(args.port)]
    os.execv(sys.executable, command)
    return EXIT_OK  # not reached: execv replaces this process


# ---------------------------------------------------------------- parser and main


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    parser = argparse.ArgumentParser(prog="scribbles", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    run = verbs.add_parser("run", help="run the experiment flow; print the results table")
    run.add_argument("config", help="experiment config (YAML)")
    run.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                     help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    run.set_defaults(func=cmd_run)

    data = verbs.add_parser("data", help="demo datasets, and whether data/ matches data.dvc")
    data.add_argument("action", choices=["build", "status"])
    data.add_argument("--force", action="store_true", help="rebuild every dataset, not just missing ones")
    data.set_defaults(func=cmd_data)

    plugins = verbs.add_parser("plugins", help="every technique: family, name, provider, summary")
    plugins.add_argument("--family", help="only this family")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(func=cmd_plugins)

    ui = verbs.add_parser("ui", help="MLflow UI on the project's store, on 127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)
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
