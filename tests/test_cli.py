"""The command line as a user meets it: exit codes, messages without tracebacks, real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import SCRIBBLES, git, make_dvc_project, run_cli
from scribbles.flows.prefect_server import free_port

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path, activity_small, digits_small) -> Path:
    """A git + DVC project with the small demo slices and the shipped configs."""
    root = make_dvc_project(tmp_path / "proj", {"activity.csv": activity_small, "digits.csv": digits_small})
    shutil.copytree(REPO / "configs", root / "configs")
    return root


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit code 2, an 'error:' line with every fragment, and no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_run_prints_results_table(project: Path, prefect_api: str) -> None:
    """`scribbles run` trains, prints the table with TTA columns and where the MLflow run is."""
    result = run_cli("run", "configs/activity.yaml", "--set", "train.epochs=1", "--set", "split.n_splits=2",
                     "--set", "model.hidden=8", cwd=project, env={"PREFECT_API_URL": prefect_api})
    assert result.returncode == 0, result.stderr
    assert "accuracy (TTA)" in result.stdout and "mean ± std" in result.stdout
    assert "scribbles ui" in result.stdout
    assert (project / "mlflow.db").exists()
    assert "Traceback" not in result.stderr and "CancelledError" not in result.stderr
    # Piped, the progress display shows nothing and leaves no empty line behind (rich's Progress.stop writes
    # one on a console that is not interactive).
    assert all(line.strip() for line in result.stderr.splitlines()), repr(result.stderr)


def test_bad_input_exits_2_without_traceback(project: Path, tmp_path: Path) -> None:
    """Missing files, unknown names, bad values and missing data columns: exit 2, field named."""
    assert_user_error(run_cli("run", "nope.yaml", cwd=project), "nope.yaml does not exist")
    assert_user_error(run_cli("run", "configs/activity.yaml", "--set", "model.name=gruu", cwd=project),
                      "model: unknown model 'gruu'; did you mean 'gru'?")
    assert_user_error(run_cli("run", "configs/activity.yaml", "--set", "train.epochs=0", cwd=project),
                      "train.epochs")
    (project / "notyaml.yaml").write_text("data: [\n")
    assert_user_error(run_cli("run", "notyaml.yaml", cwd=project), "not valid YAML")
    (project / "list.yaml").write_text("- 1\n")
    assert_user_error(run_cli("run", "list.yaml", cwd=project), "must hold a mapping")


def test_missing_data_column_is_bad_input(project: Path, prefect_api: str) -> None:
    """A target column that the data lacks is exit 2, naming the field and the columns."""
    result = run_cli("run", "configs/activity.yaml", "--set", "data.target=label", cwd=project,
                     env={"PREFECT_API_URL": prefect_api})
    assert_user_error(result, "data.target: column 'label' is not in data/activity.csv")


def test_plugins_lists_builtins(project: Path) -> None:
    """`scribbles plugins --json` lists every built-in with family, name, provider, summary."""
    result = run_cli("plugins", "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    names = {(r["family"], r["name"]) for r in rows}
    assert {("splitter", "group_kfold"), ("model", "gru"), ("tracker", "mlflow"), ("tta", "hflip")} <= names
    assert all(r["summary"] and r["provider"] for r in rows)
    table = run_cli("plugins", "--family", "splitter", cwd=project)
    assert "time_series" in table.stdout and "gru" not in table.stdout
    # A summary is its docstring's first paragraph, and its brackets are text (rich took them for markup).
    summaries = {r["name"]: r["summary"] for r in rows}
    assert summaries["one_hot"].endswith("a category unseen in the train rows encodes as all zeros.")
    models = run_cli("plugins", "--family", "model", cwd=project, env={"COLUMNS": "250"})
    assert "for images of shape [channels, height, width]." in models.stdout, models.stdout
    assert_user_error(run_cli("plugins", "--family", "optimiser", cwd=project), "unknown family")


def test_data_build_reproduces_committed_data_dvc(tmp_path: Path) -> None:
    """A fresh clone's `data build` rebuilds data/ byte for byte: data.dvc unchanged, dvc status clean."""
    root = tmp_path / "clone"
    root.mkdir()
    git("init", "-q", cwd=root)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    shutil.copy(REPO / "data.dvc", root / "data.dvc")
    before = (root / "data.dvc").read_text()
    status = run_cli("data", "status", cwd=root)
    assert status.returncode == 1 and "does not match" in status.stdout

    built = run_cli("data", "build", cwd=root)
    assert built.returncode == 0, built.stderr
    assert (root / "data.dvc").read_text() == before
    assert run_cli("data", "status", cwd=root).returncode == 0
    dvc = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=root, capture_output=True, text=True)
    assert "up to date" in dvc.stdout, dvc.stdout

    (root / "data" / "digits.csv").write_text("label\n1\n")
    changed = run_cli("data", "status", cwd=root)
    assert changed.returncode == 1
    assert "modified" in changed.stdout and "scribbles data build" in changed.stdout
    refused = run_cli("data", "build", cwd=root)
    assert refused.returncode == 1 and "differ from what data.dvc records" in refused.stderr
    assert (root / "data.dvc").read_text() == before
    assert run_cli("data", "build", "--force", cwd=root).returncode == 0
    assert run_cli("data", "status", cwd=root).returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ui_stops_on_ctrl_c_with_one_line_and_leaves_no_server(tmp_path: Path, signum: int) -> None:
    """`scribbles ui` until Ctrl-C (SIGINT to the terminal's process group) or SIGTERM: the command says
    `stopped` and exits 130/143, MLflow's server goes with it, and no traceback is printed. (The terminal's
    SIGINT reached every MLflow process, which printed nine tracebacks and took seconds to go.)"""
    from mlflow.tracking import MlflowClient

    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()  # a project's store
    port = free_port()  # one the system picks
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    ui = subprocess.Popen([SCRIBBLES, "ui", "--port", str(port)],
                          cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True)  # a terminal's process group of its own
    try:
        deadline = time.monotonic() + 180
        while not _answers(f"http://127.0.0.1:{port}/health"):
            assert ui.poll() is None and time.monotonic() < deadline, "scribbles ui did not start"
            time.sleep(0.5)
        os.killpg(ui.pid, signum) if signum == signal.SIGINT else ui.send_signal(signum)
        out, err = ui.communicate(timeout=30)
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait()
    assert ui.returncode == (130 if signum == signal.SIGINT else 143), err
    assert "Traceback" not in err + out and "DeprecationWarning" not in err, err
    # MLflow's server logs to the same stderr (its start and shutdown lines); the command's own line is one.
    assert err.splitlines().count("stopped" if signum == signal.SIGINT else "stopped by SIGTERM") == 1, err
    assert not _answers(f"http://127.0.0.1:{port}/health"), "MLflow's server outlived scribbles ui"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def test_a_metric_undefined_on_a_fold_is_explained_under_its_table() -> None:
    """ROC AUC of a fold whose valid rows hold one class is nan, and so is its mean: the results say why,
    instead of a bare `nan ± nan`; balanced accuracy on such a fold prints no scikit-learn warning."""
    import warnings

    import numpy as np
    from rich.console import Console
    from scribbles.core import create
    from scribbles.flows.commands.run import print_results

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        single = create("metric", "balanced_accuracy").compute(np.zeros(4, dtype=int), np.eye(2)[[0, 1, 0, 0]])
    assert single == 0.75
    folds = [{"fold": i, "roc_auc": value} for i, value in enumerate([0.8, float("nan"), 0.7])]
    console = Console(record=True, width=200)
    print_results(console, {"experiment": "e", "data_version": "abc", "metrics": ["roc_auc"], "folds": folds,
                            "links": {}})
    text = console.export_text()
    assert "note: roc_auc is undefined (nan) on fold 1: it cannot be computed from those valid rows" in text, text


def test_the_ui_hint_follows_the_store() -> None:
    """A tracking server serves its own UI (the hint sent users to `scribbles ui` and port 5000); a local store
    is opened with `scribbles ui`."""
    from scribbles.flows.commands.run import _ui_hint

    hint = _ui_hint("http://alice:s3cret@mlflow.lan:5077")
    assert hint == "Open the MLflow UI at http://alice:***@mlflow.lan:5077 in a browser"
    assert "ui[/], then browse to http://127.0.0.1:5000" in _ui_hint("sqlite:///mlflow.db")


def test_a_reader_that_goes_away_ends_the_output_not_the_command() -> None:
    """`scribbles plugins --json | head -c 100`: the rest of the output hit a closed pipe, and the command
    printed a BrokenPipeError traceback and "please report it" (exit 1); a run piped into `head` exited 1
    with no message after it had finished. The stream now drops what no one reads and the command ends
    with its own code."""
    import os

    from scribbles.core.redact import MaskedStream

    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    stream = MaskedStream(os.fdopen(write, "w"))
    stream.write("x" * 200_000)  # more than a pipe holds: the write reaches the closed pipe
    stream.flush()
    stream.write("after\n")
    stream.flush()  # nothing raises: the descriptor now points at /dev/null
    stream.inner.close()

    process = subprocess.Popen([str(SCRIBBLES), "plugins", "--json"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(10)
    process.stdout.close()
    assert process.wait(60) == 0
    assert process.stderr.read() == b""
