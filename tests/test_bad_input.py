"""Bad input across the whole CLI: every case exits 2 with one line naming the field or file and the fix.

Every case is found before Prefect starts (flows/preflight.py), so none needs a Prefect server.
The table runs each case through the CLI's own entry point in this process (fd-level capture, so
Prefect's and every library's output is seen too); a sample also runs the installed `scribbles`
binary. Every case also checks that no MLflow run was created and that nothing in the project changed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml
from helpers import make_dvc_project, run_cli
from scribbles.flows.cli import run_cli as cli_main
from scribbles.testing import synthetic_frame

#: A valid config over files/good.csv; each case changes one thing.
BASE: dict[str, Any] = {
    "experiment": "bad-input",
    "data": {"name": "file", "path": "files/good.csv", "target": "y", "group": "g", "time": "t"},
    "split": {"name": "kfold", "n_splits": 2},
    "model": {"name": "mlp", "hidden": [4]},
    "train": {"epochs": 1, "batch_size": 16},
    "evaluate": {"metrics": ["accuracy"]},
    "tracking": {"name": "mlflow"},
}


@dataclass
class Case:
    """One bad input: how to build the config (or raw text), extra argv, and what the message says."""

    id: str
    expect: list[str]
    change: Callable[[dict[str, Any]], Any] | None = None
    text: str | bytes | None = None
    argv: list[str] | None = None
    sets: list[str] = field(default_factory=list)
    #: Builds the command line in a scratch folder (a FIFO, say) when a fixed ``argv`` cannot.
    prepare: Callable[[Path], list[str]] | None = None
    #: Environment for the case; ``{tmp}`` stands for the scratch folder.
    env: dict[str, str] = field(default_factory=dict)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = config
        for part in parents:
            node = node[part]
        del node[last]
    return change


def _data(path: str, **fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(config: dict[str, Any]) -> None:
        config["data"].update(path=path, **fields)
    return change


#: activity's windows as sequences, without data.group (its subject column is then among the features).
SEQUENCE_DATA = {"name": "dvc", "path": "data/activity.csv", "target": "activity", "time": "timestamp",
                 "kind": "sequence", "shape": [32, 3]}

#: Nine levels of nine aliases: 387 million values from a few hundred bytes ("billion laughs").
BOMB_VALUE = "[&a0 [x, x, x, x, x, x, x, x, x], " + ", ".join(
    f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)) + "]"
BOMB = "data: {name: file, path: files/good.csv}\nsplit: {name: kfold}\ntrain:\n  epochs: " + BOMB_VALUE + "\n"


def _fifo(tmp: Path) -> list[str]:
    path = tmp / "config.yaml"
    os.mkfifo(path)
    return ["run", str(path)]


def _corrupt_store(tmp: Path) -> list[str]:
    (tmp / "mlflow.db").write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    return ["run", _base_config(tmp)]


def _log_left(tmp: Path) -> list[str]:
    """A store in write-ahead logging mode deleted without its log (``rm mlflow.db``): -wal and -shm stay."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(tmp / "mlflow.db")) as con:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA wal_autocheckpoint=0")  # the rows stay in the log, as a live store's last writes do
        con.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
        con.execute("INSERT INTO runs (name) VALUES ('old')")
        con.commit()
        # As a store's process left them (a crash, or one still running): the last close would fold them in.
        kept = {suffix: (tmp / f"mlflow.db{suffix}").read_bytes() for suffix in ("-wal", "-shm")}
    (tmp / "mlflow.db").unlink()
    for suffix, data in kept.items():
        (tmp / f"mlflow.db{suffix}").write_bytes(data)
    assert (tmp / "mlflow.db-wal").stat().st_size > 0
    return ["run", _base_config(tmp)]


def _corrupt_pages(tmp: Path) -> list[str]:
    """A SQLite store whose header is fine but some of whose pages hold random bytes (a bad disk)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(tmp / "mlflow.db")) as con:
        con.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT, status TEXT)")
        con.execute("CREATE INDEX by_name ON runs (name)")
        con.executemany("INSERT INTO runs (name, status) VALUES (?, ?)", [(f"run-{i}" * 5, "FINISHED")
                                                                          for i in range(3000)])
        con.commit()
    with open(tmp / "mlflow.db", "r+b") as handle:
        for page in (5, 20, 40):
            handle.seek(page * 4096 + 100)
            handle.write(bytes(range(200)))
    return ["run", _base_config(tmp)]


def _data_device(tmp: Path) -> list[str]:
    """data.path names a device (a link to /dev/zero with a .csv name, so the suffix check passes)."""
    os.symlink("/dev/zero", tmp / "zero.csv")
    config = yaml.safe_load(yaml.safe_dump(BASE))
    config["data"]["path"] = str(tmp / "zero.csv")
    (tmp / "device.yaml").write_text(yaml.safe_dump(config))
    return ["run", str(tmp / "device.yaml")]


def _diagnose_sequence(tmp: Path) -> list[str]:
    """`scribbles diagnose` of sequence data with a grouped splitter but no data.group."""
    config = yaml.safe_load(yaml.safe_dump(BASE))
    config.update(data=SEQUENCE_DATA, split={"name": "group_kfold", "n_splits": 2}, model={"name": "gru", "hidden": 4})
    (tmp / "diagnose.yaml").write_text(yaml.safe_dump(config))
    return ["diagnose", str(tmp / "diagnose.yaml")]


def _base_config(tmp: Path) -> str:
    path = tmp / "base.yaml"
    path.write_text(yaml.safe_dump(BASE, sort_keys=False))
    return str(path)


CASES = [
    # -- the config file itself
    Case("config-missing", ["nope.yaml does not exist"], argv=["run", "nope.yaml"]),
    Case("config-is-folder", ["files is a directory", "YAML config file"], argv=["run", "files"]),
    Case("config-unreadable", ["cannot read config file", "utf-8"], text=b"data: \xff\xfe\x00\n"),
    Case("config-not-yaml", ["not valid YAML at line 2"], text="data: [\n"),
    Case("config-not-mapping", ["must hold a mapping", "not list"], text="- data\n- split\n"),
    Case("config-empty", ["is empty", "data: and split:"], text=""),
    # -- configs that would hang, exhaust or flood the reader (core/yaml_reader.py)
    Case("config-is-device", ["/dev/zero is not a regular file"], argv=["run", "/dev/zero"]),
    Case("config-is-fifo", ["is not a regular file (a device, pipe or socket)"], prepare=lambda tmp: _fifo(tmp)),
    Case("config-too-large", ["is larger than 1024 KiB"], text="# " + "x" * (1 << 20) + "\n"),
    Case("config-alias-bomb", ["expands its aliases (*name) to more than 100,000 values"], text=BOMB),
    Case("config-deep-nesting", ["nests deeper than 64 levels at line 1"], text="data: " + "[" * 20_000),
    Case("config-deep-mappings", ["nests deeper than 64 levels"], text="data: " + "{a: " * 5_000),
    Case("config-recursive-alias", ["an alias refers to a node that contains it"], text="data: &d [*d]\n"),
    Case("config-duplicate-section", ["key 'train' appears twice (lines 2 and 4); keep one"],
         text="data: {name: x}\ntrain: {epochs: 1}\nsplit: {name: kfold}\ntrain: {epochs: 2}\n"),
    Case("config-duplicate-field", ["key 'epochs' appears twice"],
         text="data: {name: file}\nsplit: {name: kfold}\ntrain:\n  epochs: 1\n  epochs: 2\n"),
    # -- sections and fields
    Case("unknown-section", ["modle: unknown field in the top level; known fields: ", "did you mean 'model'?"],
         change=lambda c: c.update(modle=c.pop("model"))),
    Case("missing-data", ["data: required"], change=_drop("data")),
    Case("missing-split", ["split: required"], change=_drop("split")),
    Case("data-without-name", ["data: ", "needs a 'name'"], change=_drop("data.name")),
    Case("unknown-train-field", ["train.epoch: unknown field in train; known fields: ", "did you mean 'epochs'?"],
         change=_set("train.epoch", 3)),
    Case("unknown-technique-field", ["split.n_split: unknown field for splitter 'kfold'; known fields: n_splits",
                                     "did you mean 'n_splits'?"],
         change=_set("split.n_split", 3)),
    Case("metric-without-name", ["evaluate.metrics.0: needs a 'name'", "accuracy"],
         change=_set("evaluate.metrics", [{"k": 2}])),
    # -- technique names
    Case("unknown-model", ["model: unknown model 'mlpp'; did you mean 'mlp'?"], change=_set("model.name", "mlpp")),
    Case("unknown-splitter", ["split: unknown splitter 'group_kfld'; did you mean 'group_kfold'?"],
         change=_set("split.name", "group_kfld")),
    Case("unknown-strategy", ["train.strategy: unknown strategy 'singel'; did you mean 'single'?"],
         change=_set("train.strategy", "singel")),
    Case("unknown-metric", ["evaluate.metrics.0: unknown metric 'acuracy'; did you mean 'accuracy'?"],
         change=_set("evaluate.metrics", ["acuracy"])),
    Case("unknown-tta", ["evaluate.tta.transforms.0: unknown tta 'hflp'; did you mean 'hflip'?"],
         change=_set("evaluate.tta", {"transforms": [{"name": "hflp"}]})),
    Case("unknown-tracker", ["tracking.0: unknown tracker 'mlflw'; did you mean 'mlflow'?"],
         change=_set("tracking", {"name": "mlflw"})),
    Case("unknown-data-source", ["data: unknown data 'fiel'; did you mean 'file'?"], change=_set("data.name", "fiel")),
    Case("model-empty-name", ["model: unknown model ''; available: "], change=_set("model", "")),
    Case("model-not-a-name", ["model: give a model name (model: mlp) or a section (model: {{name: mlp, ...}}) (got 3)"],
         change=_set("model", 3)),
    Case("model-without-name", ["model: needs a 'name' (the model to use), e.g. model: {{name: mlp, ...}}"],
         change=_set("model", {"hidden": [4]})),
    Case("split-not-a-name", ["split: give a splitter name (split: kfold) or a section"], change=_set("split", [2])),
    Case("tracking-not-a-name", ["tracking: give a tracker name (tracking: mlflow) or a section "
                                 "(tracking: {{name: mlflow, ...}}), or a list of them (got 3)"],
         change=_set("tracking", 3)),
    Case("metric-not-a-name", ["evaluate.metrics.0: give a metric name (accuracy) or a section", "(got 3)"],
         change=_set("evaluate.metrics", [3])),
    Case("preprocess-not-a-name", ["preprocess.0: give a preprocess name (standard) or a section", "(got 3)"],
         change=_set("preprocess", [3])),
    Case("tta-not-a-section", ["evaluate.tta: give a section with fields of transforms, merge", "(got 3)"],
         change=_set("evaluate.tta", 3)),
    Case("data-not-a-section", ["data: give a section: data: {{name: file, path: FILE.csv"], change=_set("data", 3)),
    Case("model-kind-mismatch", ["model.name: model 'gru' does not take tabular data"],
         change=_set("model", {"name": "gru"})),
    # -- types and ranges
    Case("epochs-wrong-type", ["train.epochs: ", "'three'"], change=_set("train.epochs", "three")),
    Case("folds-below-2", ["split.n_splits: ", "greater than or equal to 2"], change=_set("split.n_splits", 1)),
    Case("epochs-below-1", ["train.epochs: ", "greater than or equal to 1"], change=_set("train.epochs", 0)),
    Case("lr-zero", ["train.lr: ", "greater than 0"], change=_set("train.lr", 0)),
    Case("lr-negative", ["train.lr: ", "greater than 0"], change=_set("train.lr", -0.1)),
    Case("batch-zero", ["train.batch_size: ", "greater than or equal to 1"], change=_set("train.batch_size", 0)),
    Case("workers-zero", ["train.workers: ", "greater than or equal to 1"], change=_set("train.workers", 0)),
    Case("unknown-precision", ["train.precision: ", "'fp32', 'bf16' or 'fp16'", "'fp8'"],
         change=_set("train.precision", "fp8")),
    Case("dropout-out-of-range", ["model.dropout: ", "less than 1"], change=_set("model.dropout", 1.5)),
    Case("unknown-merge", ["evaluate.tta.merge: ", "'vote'"],
         change=_set("evaluate.tta", {"transforms": [], "merge": "vote"})),
    Case("lr-inf", ["train.lr: inf is not a finite number"], change=_set("train.lr", float("inf"))),
    Case("lr-nan", ["train.lr: nan is not a finite number"], sets=["train.lr=.nan"]),
    # pydantic reads true as 1: one epoch, or two folds, without a word.
    Case("number-given-true", ["train.epochs: Input should be a number, not true"], sets=["train.epochs=true"]),
    Case("technique-number-given-true", ["split.n_splits: Input should be a number, not true"],
         sets=["split.n_splits=true"]),
    Case("technique-float-inf", ["model.dropout: -inf is not a finite number"], sets=["model.dropout=-.inf"]),
    Case("seed-beyond-int64", ["train.seed: 1180591620717411303424 is too large"], sets=["train.seed=" + str(2**70)]),
    Case("seed-beyond-numpy", ["train.seed: ", "less than or equal to 4294967295"], sets=["train.seed=" + str(2**40)]),
    Case("seed-negative", ["train.seed: ", "greater than or equal to 0"], sets=["train.seed=-1"]),
    Case("split-seed-beyond-numpy", ["split.seed", "less than or equal to 4294967295"],
         change=_set("split", {"name": "stratified_kfold", "n_splits": 2, "seed": 2**40})),
    Case("sweep-seed-negative", ["sweep.seed: ", "greater than or equal to 0"],
         change=_set("sweep", {"grid": {"train.lr": [0.1]}, "seed": -3})),
    Case("hidden-negative", ["model.hidden.0", "greater than or equal to 1"], sets=["model.hidden=[-4]"]),
    Case("shape-negative", ["data.shape.0", "greater than or equal to 1"],
         change=_data("files/good.csv", kind="sequence", shape=[-2, -2])),
    Case("rdzv-port-out-of-range", ["train.rdzv_endpoint: 'h:99999' is not HOST:PORT with a port of 1 to 65535"],
         sets=["train.nodes=2", "train.strategy=ddp", "train.rdzv_endpoint=h:99999"]),
    # -- --set
    Case("preprocess-not-a-list", ["preprocess: give a list of preprocess names or sections (preprocess: "
                                   "[standard, ...]), or one"], change=_set("preprocess", 3)),
    Case("metrics-not-a-list", ["evaluate.metrics: give a list of metric names or sections (metrics: "
                                "[accuracy, ...]), or one"], change=_set("evaluate.metrics", 3)),
    Case("set-below-a-number", ["--set model.hidden.x: ", "model.hidden", "set model.hidden itself"],
         sets=["model.hidden=8", "model.hidden.x=3"]),
    Case("set-without-equals", ["--set 'train.epochs' must look like key.path=value"], sets=["train.epochs"]),
    Case("set-without-key", ["must look like key.path=value"], sets=["=3"]),
    Case("set-unknown-key", ["train.epochz: unknown field in train", "did you mean 'epochs'?"],
         sets=["train.epochz=3"]),
    Case("set-below-a-value", ["--set data.path.x: data.path is 'files/good.csv', not a section"],
         sets=["data.path.x=1"]),
    Case("set-past-a-list", ["--set evaluate.metrics.1: evaluate.metrics is a list of 1 item, so '1' names none; "
                             "pick one by its index, 0 to 0"], sets=["evaluate.metrics.1=f1_macro"]),
    Case("sweep-path-below-a-value", ["sweep path data.path.x: data.path is 'files/good.csv', not a section"],
         change=_set("sweep", {"grid": {"data.path.x": [1]}})),
    Case("set-wrong-type", ["train.lr: ", "'abc'"], sets=["train.lr=abc"]),
    Case("set-huge-value", ["train.lr: ", "(got 'aaaa", "...aaaa"], sets=["train.lr=" + "a" * 100_000]),
    Case("set-alias-bomb", ["--set train.epochs expands its aliases"], sets=["train.epochs=" + BOMB_VALUE]),
    Case("set-deep-nesting", ["--set model.hidden nests deeper than 64 levels"],
         sets=["model.hidden=" + "[" * 20_000]),
    # -- data files
    Case("data-missing", ["data.path: files/nope.csv does not exist"], change=_data("files/nope.csv")),
    Case("data-empty", ["data.path: empty.csv is empty"], change=_data("files/empty.csv")),
    Case("data-column-named-twice", ["data.path: twice.csv names the column 'f1' 2 times in its header",
                                     "give each column its own name"], change=_data("files/twice.csv")),
    Case("data-header-only", ["data.path: files/header.csv has a header but no rows"],
         change=_data("files/header.csv")),
    Case("data-corrupt-parquet", ["data.path: cannot read corrupt.parquet as Parquet", "valid Parquet file"],
         change=_data("files/corrupt.parquet")),
    Case("data-corrupt-csv", ["data.path: cannot read binary.csv as CSV"], change=_data("files/binary.csv")),
    Case("data-wrong-format", ["data.path: good.json has the unsupported file type '.json'", ".csv or .parquet"],
         change=_data("files/good.json")),
    Case("data-folder", ["data.path: files/folder.csv is a folder"], change=_data("files/folder.csv")),
    Case("data-missing-target", ["data.target: column 'label' is not in files/good.csv; columns: y, g, t"],
         change=_set("data.target", "label")),
    Case("data-missing-group", ["data.group: column 'subject' is not in files/good.csv"],
         change=_set("data.group", "subject")),
    Case("data-missing-time", ["data.time: column 'when' is not in files/good.csv"], change=_set("data.time", "when")),
    Case("data-bad-timestamps", ["data.time: column 't' in files/badtime.csv holds values that are not timestamps"],
         change=_data("files/badtime.csv")),
    Case("data-nan-target", ["data.target: column 'y' in files/nantarget.csv has 2 missing values (e.g. row 3)"],
         change=_data("files/nantarget.csv")),
    Case("data-text-feature", ["data.features: colour is not numeric", "one_hot"],
         change=_data("files/text.csv")),
    Case("data-nan-feature", ["data.features: f1 has missing values (e.g. row 5)", "impute"],
         change=_data("files/nanfeature.csv")),
    # A shape the message suggests is one of the data's kind: [steps, channels] for sequences, never [4].
    Case("data-shape-mismatch", ["data.shape: [3, 3] holds 9 values but there are 4 features (f0, f1, f2, ...), and "
                                 "4 is not a multiple of the 3 channels per step; list data.features"],
         change=_data("files/good.csv", kind="sequence", shape=[3, 3])),
    Case("data-shape-mismatch-hint", ["data.shape: [3, 2] holds 6 values", "such as [2, 2]"],
         change=_data("files/good.csv", kind="sequence", shape=[3, 2])),
    Case("data-shape-mismatch-image", ["4 features", "4 is not a multiple of the 9 values per channel (3 x 3)"],
         change=lambda c: (_data("files/good.csv", kind="image", shape=[1, 3, 3])(c), c.update(model={"name": "cnn"}))),
    Case("data-shape-rank", ["data.shape: sequence data needs 2 dimensions: [steps, channels]", "(got [4])"],
         change=_data("files/good.csv", kind="sequence", shape=[4])),
    Case("data-is-device", ["data.path: {tmp}/zero.csv is not a regular file"],
         prepare=lambda tmp: _data_device(tmp)),
    Case("data-inf-feature", ["data.features: f2 in files/inffeature.csv hold infinite values (e.g. row 4)"],
         change=_data("files/inffeature.csv")),
    Case("data-nan-group", ["data.group: column 'g' in files/nangroup.csv has 1 missing value (e.g. row 6)"],
         change=_data("files/nangroup.csv")),
    Case("data-one-row", ["data.path: files/onerow.csv has 1 row; cross-validation needs at least 2"],
         change=_data("files/onerow.csv")),
    Case("split-one-group", ["split.n_splits: group_kfold needs at least 2 groups", "the data has 1"],
         change=lambda c: (c["data"].update(path="files/onegroup.csv"), c.update(split={"name": "group_kfold"}))),
    Case("dvc-unknown-rev", ["data.rev: unknown Git revision 'no-such-rev'", "git log --oneline"],
         change=lambda c: c["data"].update(name="dvc", path="data/activity.csv", rev="no-such-rev")),
    # -- the MLflow store, checked in seconds before Prefect or MLflow start
    Case("tracking-unknown-scheme", ["MLFLOW_TRACKING_URI: the MLflow tracking URI 'bogus://x' has the unknown "
                                     "scheme 'bogus'"], env={"MLFLOW_TRACKING_URI": "bogus://x"}),
    Case("tracking-param-unknown-scheme", ["tracking.0.tracking_uri: ", "unknown scheme 'ftp'"],
         change=_set("tracking", {"name": "mlflow", "tracking_uri": "ftp://x/y"})),
    # MLflow 3 writes no folder store (it raised after the run started: exit 1); a bare word is a folder path too.
    Case("tracking-folder-store", ["MLFLOW_TRACKING_URI: {tmp}/runs is a folder store, which MLflow no longer "
                                   "writes to", "sqlite:///{tmp}/runs.db", "MLFLOW_ALLOW_FILE_STORE=true"],
         env={"MLFLOW_TRACKING_URI": "{tmp}/runs"}),
    Case("tracking-not-a-uri", ["MLFLOW_TRACKING_URI: not-a-uri is a folder store"],
         env={"MLFLOW_TRACKING_URI": "not-a-uri"}),
    Case("tracking-under-proc", ["MLFLOW_TRACKING_URI: cannot create the MLflow store /proc/nope/mlflow.db"],
         env={"MLFLOW_TRACKING_URI": "sqlite:////proc/nope/mlflow.db"}),
    # A file separated by semicolons read as one column named by the whole header.
    Case("csv-semicolons", ["data.path: files/semi.csv is separated by ';', not commas",
                            "sep=';'"], change=lambda c: c["data"].update(path="files/semi.csv")),
    # One number where a list goes: pydantic's words alone did not say how to write it.
    Case("hidden-not-a-list", ["model.hidden: Input should be a valid list; write a list, like [64]"],
         change=lambda c: c["model"].update(hidden=64)),
    # A typo in a folder of the store's path made that folder and a fresh, empty store (exit 0).
    Case("tracking-folder-missing", ["MLFLOW_TRACKING_URI: cannot create the MLflow store {tmp}/runz/mlflow.db (its "
                                     "folder {tmp}/runz does not exist)", "mkdir -p {tmp}/runz"],
         env={"MLFLOW_TRACKING_URI": "sqlite:///{tmp}/runz/mlflow.db"}),
    Case("tracking-param-folder-missing", ["tracking.0.tracking_uri: cannot create the MLflow store",
                                           "does not exist"],
         change=_set("tracking", {"name": "mlflow", "tracking_uri": "sqlite:////nonexistent/dir/m.db"})),
    Case("tracking-store-is-folder", ["the MLflow store {tmp} is not a file"],
         env={"MLFLOW_TRACKING_URI": "sqlite:///{tmp}"}),
    Case("tracking-corrupt-store", ["cannot open the MLflow store", "file is not a database", "move it aside"],
         prepare=lambda tmp: _corrupt_store(tmp), env={"MLFLOW_TRACKING_URI": "sqlite:///{tmp}/mlflow.db"}),
    Case("tracking-corrupt-pages", ["the MLflow store", "is corrupt (*** in database main *** On tree page",
                                    "move it aside"],
         prepare=lambda tmp: _corrupt_pages(tmp), env={"MLFLOW_TRACKING_URI": "sqlite:///{tmp}/mlflow.db"}),
    Case("tracking-log-left", ["the MLflow store {tmp}/mlflow.db is missing but {tmp}/mlflow.db-wal and "
                               "{tmp}/mlflow.db-shm are still there", "delete them to start a new store"],
         prepare=lambda tmp: _log_left(tmp), env={"MLFLOW_TRACKING_URI": "sqlite:///{tmp}/mlflow.db"}),
    Case("dask-scheduler-down", ["train.dask_address: no Dask scheduler answers at tcp://127.0.0.1:9 within 3 s",
                                 "drop train.dask_address"],
         change=lambda c: c["train"].update(parallel_folds=2, dask_address="tcp://127.0.0.1:9")),
    Case("dask-address-not-one", ["train.dask_address: 'http://h:1' is not a Dask scheduler address"],
         change=lambda c: c["train"].update(parallel_folds=2, dask_address="http://h:1")),
    Case("tracking-server-down", ["the MLflow tracking server http://127.0.0.1:9 did not answer within 3 s"],
         env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}),
    Case("split-needs-group", ["data.group: splitter 'group_kfold'", "needs data.group"],
         change=lambda c: (c["data"].pop("group"), c["data"].update(features=["f0", "f1", "f2", "f3"]),
                           c.update(split={"name": "group_kfold", "n_splits": 2}))),
    # The group column left among the features as text (activity's subject): the missing data.group is named,
    # not the text feature.
    Case("split-needs-group-not-encoding", ["data.group: splitter 'group_kfold'", "needs data.group"],
         change=lambda c: (c["data"].pop("group"), c["data"].update(path="files/text.csv"),
                           c.update(split={"name": "group_kfold", "n_splits": 2}))),
    # The same on sequence data (activity's windows): the subject column left among the features makes 97 of
    # them for a [32, 3] shape; the missing data.group is named, not the shape.
    Case("split-needs-group-sequence", ["data.group: splitter 'group_kfold'", "needs data.group"],
         change=lambda c: c.update(data=SEQUENCE_DATA, split={"name": "group_kfold", "n_splits": 2},
                                   model={"name": "gru", "hidden": 4})),
    Case("diagnose-needs-group-sequence", ["data.group: splitter 'group_kfold'", "needs data.group"],
         prepare=lambda tmp: _diagnose_sequence(tmp)),
    Case("sequence-shape-off-by-an-id", ["data.shape: [32, 3] holds 96 values but there are 97 features (subject, ",
                                         "97 is not a multiple of the 3 channels per step", "data.group"],
         change=lambda c: c.update(data=SEQUENCE_DATA, model={"name": "gru", "hidden": 4})),
    # Column names that number the axes (t00_x, t00_y ...; p0_0, p0_1 ...) against the shape and layout given:
    # each ran to exit 0 on scrambled rows.
    Case("sequence-layout-against-names", ["data.layout: channel_major reads every step of one channel first",
                                           "(t00_x, t00_y, ...)", "leave data.layout out"],
         change=lambda c: c.update(data={**SEQUENCE_DATA, "group": "subject", "layout": "channel_major"},
                                   model={"name": "gru", "hidden": 4})),
    Case("sequence-layout-and-shape-against-names", ["data.layout: channel_major", "give data.shape: [32, 3]"],
         change=lambda c: c.update(data={**SEQUENCE_DATA, "group": "subject", "layout": "channel_major",
                                         "shape": [3, 32]}, model={"name": "gru", "hidden": 4})),
    Case("sequence-shape-against-names", ["data.shape: [4, 24] reads 24 channels before the next step",
                                          "go through 3 values: give data.shape: [32, 3]"],
         change=lambda c: c.update(data={**SEQUENCE_DATA, "group": "subject", "shape": [4, 24]},
                                   model={"name": "gru", "hidden": 4})),
    Case("image-shape-against-names", ["data.shape: [1, 2, 8] reads rows of 8 pixels",
                                       "go through rows of 4: give data.shape: [1, 4, 4]"],
         change=lambda c: c.update(data={"name": "file", "path": "files/pixels.csv", "target": "y", "group": "g",
                                         "kind": "image", "shape": [1, 2, 8]}, model={"name": "cnn"})),
    Case("image-shape-channels-last", ["transform 'shift': offsets must stay inside the 4x1 image",
                                       "looks like [height, width, channels]", "[1, 4, 4]"],
         change=lambda c: c.update(data={"name": "file", "path": "files/pixels.csv", "target": "y", "group": "g",
                                         "kind": "image", "shape": [4, 4, 1]}, model={"name": "cnn"},
                                   evaluate={"tta": {"transforms": [{"name": "shift", "dx": [1], "dy": [0]}]}})),
    Case("split-more-folds-than-groups", ["split.n_splits: group_kfold asks for 20 folds but the data has 8 groups"],
         change=_set("split", {"name": "group_kfold", "n_splits": 20})),
    Case("dvc-path-not-tracked", ["data.path: data/nope.csv is not in the DVC repo"],
         change=lambda c: c["data"].update(name="dvc", path="data/nope.csv")),
    Case("dvc-path-outside-the-repo", ["data.path: /etc/hostname is outside the DVC repo", "data.name: file"],
         change=lambda c: c["data"].update(name="dvc", path="/etc/hostname")),
    Case("dvc-folder", ["data.path: data is a folder in the DVC repo"],
         change=lambda c: c["data"].update(name="dvc", path="data")),
    # -- other verbs and the command line itself
    Case("ui-port-out-of-range", ["argument --port: 99999 is not a port; give 1 to 65535"],
         argv=["ui", "--port", "99999"]),
    Case("ui-bogus-store", ["the unknown scheme 'bogus'"], argv=["ui"], env={"MLFLOW_TRACKING_URI": "bogus://x"}),
    Case("join-port-out-of-range", ["join: 'HOST:99999' is not HOST:PORT with a port of 1 to 65535"],
         argv=["join", "HOST:99999"]),
    Case("join-timeout-nan", ["argument --timeout: nan must be a finite, positive number"],
         argv=["join", "h:29400", "--timeout", "nan"]),
    Case("join-workers-zero", ["argument --workers: 0 must be at least 1"], argv=["join", "h:29400", "--workers", "0"]),
    Case("serve-interval-nan", ["argument --interval: nan must be a finite, positive number of seconds"],
         argv=["serve", "x.yaml", "--interval", "nan"]),
    Case("serve-interval-inf", ["argument --interval: inf must be a finite"],
         argv=["serve", "x.yaml", "--interval", "inf"]),
    Case("serve-interval-negative", ["argument --interval: -5 must be a finite, positive"],
         argv=["serve", "x.yaml", "--interval=-5"]),
    Case("compare-runs-zero", ["argument --runs: 0 must be at least 1"], argv=["compare", "--runs", "0"]),
    Case("new-plugin-long-name", ["new-plugin: the name is 300 characters long; use at most 100"],
         argv=["new-plugin", "a" * 300]),
    Case("split-out-unwritable", ["--out: cannot write in /proc"],
         prepare=lambda tmp: ["split", _base_config(tmp), "--out", "/proc/folds.csv"]),
    Case("split-out-missing-folder", ["--out: directory nope does not exist"],
         prepare=lambda tmp: ["split", _base_config(tmp), "--out", "nope/folds.csv"]),
    Case("split-plot-unwritable", ["--plot: cannot write in /proc"],
         prepare=lambda tmp: ["split", _base_config(tmp), "--out", str(tmp / "f.csv"), "--plot", "/proc/t.png"]),
    # -- read-only verbs never create a store (none exists in the project)
    Case("rerun-without-store", ["there is no MLflow store at", "mlflow.db", "scribbles run CONFIG"],
         argv=["rerun", "0123abcd"]),
    Case("resume-without-store", ["there is no MLflow store at"], argv=["resume", "0123abcd"]),
    Case("compare-without-store", ["there is no MLflow store at"], argv=["compare"]),
    Case("ui-without-store", ["there is no MLflow store at"], argv=["ui"]),
    Case("plugins-unknown-family", ["--family: unknown family 'optimiser'"], argv=["plugins", "--family", "optimiser"]),
    Case("unknown-verb", ["invalid choice: 'rnu'", "scribbles --help"], argv=["rnu"]),
    Case("run-without-config", ["the following arguments are required: config"], argv=["run"]),
    Case("new-plugin-bad-name", ["'my plugin' is not a valid package name"], argv=["new-plugin", "my plugin"]),
    Case("new-plugin-exists", ["files already exists and is not empty"], argv=["new-plugin", "files"]),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, activity_small) -> Path:
    """A git + DVC project (data/activity.csv tracked) with good and broken plain files under files/."""
    root = make_dvc_project(tmp_path_factory.mktemp("bad") / "proj", {"activity.csv": activity_small.iloc[:60]})
    files = root / "files"
    files.mkdir()
    good = synthetic_frame(rows=48)
    good.to_csv(files / "good.csv", index=False)
    good.to_json(files / "good.json")
    (files / "empty.csv").write_bytes(b"")
    good.to_csv(files / "semi.csv", index=False, sep=";")
    good.iloc[:0].to_csv(files / "header.csv", index=False)
    (files / "corrupt.parquet").write_bytes(b"PAR1 this is not really parquet")
    (files / "binary.csv").write_bytes(b"\x00\xff\xfe\x01garbage\x9c\n\x00")
    good.assign(f2=good["f2"].where(good.index != 4, float("inf"))).to_csv(files / "inffeature.csv", index=False)
    good.assign(g=good["g"].where(good.index != 6)).to_csv(files / "nangroup.csv", index=False)
    good.iloc[:1].to_csv(files / "onerow.csv", index=False)
    pixels = pd.DataFrame(np.random.default_rng(0).random((48, 16)), columns=[f"p{r}_{c}" for r in range(4)
                                                                              for c in range(4)])
    pixels.assign(y=good["y"], g=good["g"]).to_csv(files / "pixels.csv", index=False)
    good.assign(g=0).to_csv(files / "onegroup.csv", index=False)
    (files / "folder.csv").mkdir()
    (files / "folder.csv" / "part.csv").write_text("y\n1\n")
    broken = good.astype({"t": str})
    broken.loc[7, "t"] = "not a date"
    broken.to_csv(files / "badtime.csv", index=False)
    nan_target = good.astype({"y": float})
    nan_target.loc[[3, 9], "y"] = None
    nan_target.to_csv(files / "nantarget.csv", index=False)
    good.assign(colour=["red", "green"] * 24).to_csv(files / "text.csv", index=False)
    nan_feature = good.copy()
    nan_feature.loc[5, "f1"] = None
    nan_feature.to_csv(files / "nanfeature.csv", index=False)
    good.rename(columns={"f2": "f1"}).to_csv(files / "twice.csv", index=False)
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (path -> size, mtime), to prove a case wrote nothing."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        # DVC keeps its own lock and index state under .dvc/tmp whenever it reads the repo.
        if p.is_file() and ".git" not in p.parts and "tmp" not in p.relative_to(root).parts[:2]
    }


def argv_of(case: Case, cases_dir: Path) -> list[str]:
    """The command line of ``case``; its config (if any) is written outside the project."""
    if case.argv is not None:
        return case.argv
    if case.prepare is not None:
        return case.prepare(cases_dir)
    path = cases_dir / f"{case.id}.yaml"
    if case.text is not None:
        path.write_bytes(case.text if isinstance(case.text, bytes) else case.text.encode())
    else:
        config = yaml.safe_load(yaml.safe_dump(BASE))
        if case.change is not None:
            case.change(config)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    return ["run", str(path), *[arg for item in case.sets for arg in ("--set", item)]]


def test_the_table_has_at_least_30_cases() -> None:
    """The issue asks for a table of at least 30 bad inputs; ids are unique."""
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, project: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 2, one 'error:' line with the field or file and the fix, no traceback, nothing written."""
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value.format(tmp=tmp_path))
    expect = [fragment.format(tmp=tmp_path) for fragment in case.expect]
    argv = argv_of(case, tmp_path)
    before = snapshot(project)
    processes = {child.pid for child in psutil.Process().children(recursive=True)}
    capfd.readouterr()
    try:
        code = cli_main(argv)
    except SystemExit as exc:  # argparse's usage errors exit from inside the parser
        code = exc.code
    out, err = capfd.readouterr()
    assert code == 2, out + err
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[:2000]
    assert len(lines[0]) < 600, f"quoted input must be cut short: {lines[0][:2000]}"
    assert "Value error" not in lines[0], "pydantic's prefix is not ours to show"
    for fragment in expect:
        assert fragment in lines[0], lines[0]
    assert not (project / "mlflow.db").exists()
    assert snapshot(project) == before
    # Bad input leaves no process behind: a temporary Prefect server started once the YAML parsed is
    # stopped with it. (Its output file in the temp folder is not checked here: other tests' runs write
    # theirs there meanwhile; test_run_start checks it.)
    assert {child.pid for child in psutil.Process().children(recursive=True)} <= processes


SUBPROCESS_SAMPLE = ["unknown-section", "data-nan-target", "set-without-equals", "unknown-verb"]


@pytest.mark.parametrize("case_id", SUBPROCESS_SAMPLE)
def test_bad_input_through_the_installed_binary(case_id: str, project: Path, tmp_path: Path) -> None:
    """The same cases through the real `scribbles` process: exit 2, one line, no traceback.

    No Prefect server is given: bad input is found before Prefect starts, so none is needed.
    """
    case = next(c for c in CASES if c.id == case_id)
    assert "MLFLOW_TRACKING_URI" not in os.environ  # so that mlflow.db in the project is where a run would go
    result = run_cli(*argv_of(case, tmp_path), cwd=project)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and all(f in lines[0] for f in case.expect), result.stderr
    assert not (project / "mlflow.db").exists()


def test_broken_file_frames_are_what_the_cases_say(project: Path) -> None:
    """The broken files hold exactly the defect their case names (so a pass means the check works)."""
    assert pd.read_csv(project / "files/nantarget.csv")["y"].isna().sum() == 2
    assert pd.read_csv(project / "files/header.csv").empty
    assert (project / "files/empty.csv").stat().st_size == 0


def test_bad_input_found_after_the_prefect_server_started_stops_it(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """`run` starts its temporary Prefect server once the YAML parses, so that the server's start overlaps
    the checks; bad input found after that (data that do not exist) stops it: exit 2, the server's
    process ended, its output file in the temporary folder removed."""
    import tempfile

    from scribbles.flows import prefect_server

    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # the server's output file is made here
    started: list[prefect_server.Starting] = []
    start = prefect_server.Starting.__init__

    def noting(self: prefect_server.Starting) -> None:
        start(self)
        started.append(self)

    monkeypatch.setattr(prefect_server.Starting, "__init__", noting)
    case = next(c for c in CASES if c.id == "data-missing")
    code = cli_main(argv_of(case, tmp_path))
    err = capfd.readouterr().err
    assert code == 2 and case.expect[0] in err, err
    assert len(started) == 1, "the server starts once the YAML parses, before the data are checked"
    assert started[0].process.poll() is not None
    assert not list(scratch.iterdir())
    assert not (project / "mlflow.db").exists()


def test_a_run_from_a_subfolder_or_outside_the_project_says_where_to_run_it(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """A config's paths start where scribbles runs. From a subfolder the message blamed "the DVC repo at
    .../configs" and told the user to build the data, which `scribbles data build` said was built: a loop.
    Now it names the project's root; from outside any repo it says the folder is not a DVC repository."""
    config = tmp_path / "dvc.yaml"
    config.write_text(yaml.safe_dump({**BASE, "data": {**BASE["data"], "name": "dvc", "path": "data/activity.csv"}}))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    sub = project / "sub"
    sub.mkdir(exist_ok=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for where, expect in ((sub, f"is not in the current folder {sub}; a config's paths start where scribbles runs: "
                                f"run it from the project's root, {project}"),
                          (outside, f"the current folder {outside} is not a DVC repository; run scribbles from your "
                                    "project's root")):
        monkeypatch.chdir(where)
        capfd.readouterr()
        code = cli_main(["run", str(config)])
        err = capfd.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("error: data.path: data/activity.csv"), err
        assert expect in err, err
        assert not (where / "mlflow.db").exists()
