"""`scribbles split CONFIG --out FILE.csv`: the fold assignment, after the leakage guard, without training."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scribbles.core import BadInput, ScribblesError

if TYPE_CHECKING:  # numpy and the contracts are imported when the verb runs, not to build the parser
    import numpy as np
    from scribbles.core import Dataset, Fold

from .common import EXIT_OK, console, writable_file


def assignment_table(folds: list[Fold]) -> dict[str, np.ndarray]:
    """Columns ``row``, ``fold``, ``role``: one line per row per fold it takes part in, by fold then row."""
    import numpy as np

    rows, fold_of, role = [], [], []
    for fold in folds:
        for side, positions in (("train", fold.train), ("valid", fold.valid)):
            rows.append(positions)
            fold_of.append(np.full(len(positions), fold.index, dtype=np.int64))
            role.append(np.full(len(positions), side == "valid"))
    row, fold_index, is_valid = np.concatenate(rows), np.concatenate(fold_of), np.concatenate(role)
    order = np.lexsort((row, fold_index))
    return {
        "row": row[order],
        "fold": fold_index[order],
        "role": np.where(is_valid[order], "valid", "train"),
    }


def write_csv_atomically(columns: dict[str, np.ndarray], out: Path) -> None:
    """Write the CSV to a temporary file beside ``out``, then rename: readers never see half a file."""
    import pandas as pd

    directory = out.parent if str(out.parent) else Path(".")
    if not directory.is_dir():
        raise BadInput(f"--out: directory {directory} does not exist; create it or pick another path")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise ScribblesError(f"--out: cannot write in {directory} ({exc.strerror or exc})") from None
    try:
        with os.fdopen(handle, "w", newline="") as stream:
            pd.DataFrame(columns).to_csv(stream, index=False)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, out)
    except OSError as exc:  # disk full, say: one line, and the partial file goes
        Path(temporary).unlink(missing_ok=True)
        raise ScribblesError(f"--out: cannot write {out} ({exc.strerror or exc}); free space or pick another "
                             "path") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def print_report(out: Any, dataset: Dataset, folds: list[Fold], splitter: str) -> None:
    """The fold report: sizes, group counts and time ranges of every fold."""
    from rich.table import Table
    from scribbles.core.data import fold_report, read_times

    times = read_times(dataset) if dataset.time and dataset.time in dataset.frame.columns else None
    reports = [fold_report(dataset, fold, times) for fold in folds]
    from rich import box

    table = Table(title=f"{splitter}: {len(folds)} folds of {len(dataset)} rows (leakage guard passed)",
                  box=box.SIMPLE_HEAD, caption="rows, groups and time range of each side of each fold")
    keys = [key for key in reports[0] if key != "fold"]
    table.add_column("fold", justify="right")
    for key in keys:
        timed = key.endswith(("_start", "_end"))
        header = key.replace("_rows", "").replace("_", " ").replace(" start", " from").replace(" end", " to")
        table.add_column(header, justify="right", overflow="fold", min_width=16 if timed else None)
    for report in reports:
        # To the minute keeps the table narrow; the fold report logged to MLflow keeps full precision.
        cells = [str(report.get(key, ""))[:16] if key.endswith(("_start", "_end")) else str(report.get(key, ""))
                 for key in keys]
        table.add_row(str(report["fold"]), *cells)
    out.print(table)


def cmd_split(args: argparse.Namespace) -> int:
    """Split the config's data with its splitter, guard every fold, write the assignment CSV."""
    from scribbles.core import load_config, registry_for, resolve
    from scribbles.core.data import guarded_folds

    config = load_config(args.config, args.set or [])
    registry = registry_for(config)
    plan = resolve(config, registry)
    out_path = Path(args.out)
    writable_file(out_path, "--out")
    if args.plot:  # checked before anything is written: a bad --plot must not leave a CSV behind
        writable_file(Path(args.plot), "--plot")
    dataset = plan.data.load_roles()  # a split reads no features: only the columns the splitter needs
    folds = guarded_folds(plan.splitter, dataset)
    write_csv_atomically(assignment_table(folds), out_path)
    out = console()  # piped or captured: wide, so the table is not squeezed (common.console)
    print_report(out, dataset, folds, plan.splitter.name)
    out.print(f"wrote the fold assignment (row, fold, role) to {out_path}")
    if args.plot:
        from ..plots import fold_timeline

        fold_timeline(dataset, folds, Path(args.plot), plan.splitter.name)
        out.print(f"wrote the fold timeline to {args.plot}")
    return EXIT_OK


def add_parser(verbs: Any) -> None:
    """Register `scribbles split`."""
    split = verbs.add_parser("split", help="fold assignment (row, fold, role) without training, after the guard")
    split.add_argument("config", help="experiment config (YAML)")
    split.add_argument("--out", required=True, metavar="FILE.csv", help="where to write the fold assignment")
    split.add_argument("--plot", metavar="FILE.png", help="also draw the fold timeline")
    split.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                       help="override a config value, e.g. --set split.n_splits=3 (repeatable)")
    split.set_defaults(func=cmd_split)
