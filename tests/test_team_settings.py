"""scribbles.toml, `scribbles doctor`, `scribbles data push | pull` and `store migrate`'s input checks, through the
CLI, without servers (tests/test_team_mode.py runs them against real ones)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
from helpers import SCRIBBLES, git, make_dvc_project, run_cli
from scribbles.flows.prefect_server import free_port

CLEAN = {k: v for k, v in os.environ.items()
         if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "SCRIBBLES_DVC_REMOTE", "SCRIBBLES_STUDY_STORAGE",
                      "SCRIBBLES_SETTINGS")}


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**CLEAN, **env}
    return subprocess.run([SCRIBBLES, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120)


def _project(root: Path) -> Path:
    return make_dvc_project(root, {"t.csv": pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})})


def test_a_bad_settings_file_is_one_error_line_naming_the_entry(tmp_path: Path) -> None:
    """An unknown entry, a non-string value and broken TOML: exit 2, one `error:` line, nothing run."""
    (tmp_path / ".git").mkdir()
    for text, expected in [('[mlflow]\ntracking_url = "x"\n', "unknown entry mlflow.tracking_url; known entries: "),
                           ("[prefect]\napi_url = 4200\n", "prefect.api_url must be a non-empty string"),
                           ("[mlflow\n", "not valid TOML")]:
        (tmp_path / "scribbles.toml").write_text(text)
        result = _cli("doctor", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    (tmp_path / "scribbles.toml").unlink()
    (tmp_path / "scribbles.toml").mkdir()  # a folder of that name is not ignored in silence
    folder = _cli("doctor", cwd=tmp_path)
    assert folder.returncode == 2 and folder.stderr.startswith(f"error: {tmp_path / 'scribbles.toml'} is not a file")


def test_doctor_reads_the_settings_file_env_wins_and_a_dead_server_is_named(tmp_path: Path) -> None:
    """Doctor shows each setting and its source; the environment overrides the file; a tracking server that does
    not answer makes it exit 1 naming mlflow."""
    root = _project(tmp_path / "proj")
    (root / "scribbles.toml").write_text(f'[mlflow]\ntracking_uri = "sqlite:///{root}/team.db"\n'
                                         '[dvc]\nremote = "../remote"\n')
    (tmp_path / "remote").mkdir()
    (root / "sub").mkdir()
    ok = _cli("doctor", cwd=root / "sub")  # found from a folder below the project root
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"settings: {root / 'scribbles.toml'}" in ok.stdout
    assert f"mlflow   sqlite:///{root}/team.db (MLFLOW_TRACKING_URI from {root / 'scribbles.toml'}): ok" in ok.stdout
    assert f"dvc      remote team at {tmp_path / 'remote'}" in ok.stdout  # relative to the file's folder
    assert "prefect  a temporary server per run" in ok.stdout
    dead = f"http://127.0.0.1:{free_port()}"
    bad = _cli("doctor", cwd=root, MLFLOW_TRACKING_URI=dead)
    assert bad.returncode == 1
    assert f"mlflow   {dead} (MLFLOW_TRACKING_URI from environment): NOT OK" in bad.stdout
    assert "failed: not answering: mlflow;" in bad.stdout
    port = free_port()  # any HTTP server answers /health; only an MLflow one answers its REST API
    web = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        not_mlflow = _cli("doctor", cwd=root, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}")
        for _ in range(50):
            if "not answer within" not in not_mlflow.stdout:
                break
            not_mlflow = _cli("doctor", cwd=root, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}")
    finally:
        web.terminate()
        web.wait(10)
    assert not_mlflow.returncode == 1 and "not MLflow's REST API" in not_mlflow.stdout, not_mlflow.stdout
    (tmp_path / "remote").rmdir()
    gone = _cli("doctor", cwd=root)
    assert gone.returncode == 1 and "failed: not answering: dvc;" in gone.stdout, gone.stdout


def test_data_push_then_pull_in_a_fresh_clone_leaves_dvc_status_clean(tmp_path: Path) -> None:
    """`data push` to the remote named in scribbles.toml; a fresh clone's `data pull` restores data/ exactly."""
    root = _project(tmp_path / "proj")
    none = _cli("data", "push", cwd=root)
    assert none.returncode == 2 and none.stderr.startswith("error: no DVC remote: set dvc.remote in scribbles.toml")
    (root / "scribbles.toml").write_text(f'[dvc]\nremote = "{tmp_path / "remote"}"\n')
    git("add", "-A", cwd=root)
    git("commit", "-qm", "team remote", cwd=root)
    pushed = _cli("data", "push", cwd=root)
    assert pushed.returncode == 0 and "pushed 2 file(s) to DVC remote team" in pushed.stdout, pushed.stderr
    git("clone", "-q", str(root), str(tmp_path / "clone"), cwd=tmp_path)
    clone = tmp_path / "clone"
    assert not (clone / "data" / "t.csv").exists()
    pulled = _cli("data", "pull", cwd=clone)
    assert pulled.returncode == 0 and "pulled 2 file(s)" in pulled.stdout, pulled.stderr
    assert (clone / "data" / "t.csv").read_bytes() == (root / "data" / "t.csv").read_bytes()
    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=clone, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout
    (clone / "data" / "t.csv").unlink()
    shutil.rmtree(clone / ".dvc" / "cache")
    empty = tmp_path / "empty-remote"
    empty.mkdir()
    lost = _cli("data", "pull", cwd=clone, SCRIBBLES_DVC_REMOTE=str(empty))
    assert lost.returncode == 1 and lost.stderr.strip().splitlines()[-1].startswith("failed: dvc pull"), lost.stderr


def test_store_migrate_refuses_bad_targets_before_copying(tmp_path: Path) -> None:
    """--to the store itself, a server that does not answer, a source store that does not exist: exit 2."""
    same = run_cli("store", "migrate", "--from", f"sqlite:///{tmp_path}/a.db", "--to", f"sqlite:///{tmp_path}/a.db",
                   cwd=tmp_path)
    assert same.returncode == 2 and "is the store being migrated" in same.stderr
    # The same file by a relative path: every run was copied into its own store, again on each call.
    relative = run_cli("store", "migrate", "--from", f"sqlite:///{tmp_path}/a.db", "--to", "sqlite:///a.db",
                       cwd=tmp_path)
    assert relative.returncode == 2 and "is the store being migrated" in relative.stderr, relative.stderr
    missing = run_cli("store", "migrate", "--from", f"sqlite:///{tmp_path}/none.db", "--to",
                      f"sqlite:///{tmp_path}/b.db", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("error: --from: there is no MLflow store")
    assert not (tmp_path / "b.db").exists() and not (tmp_path / "none.db").exists()
    sqlite3.connect(tmp_path / "src.db").execute("CREATE TABLE t (x)").connection.close()
    dead = run_cli("store", "migrate", "--from", f"sqlite:///{tmp_path}/src.db", "--to",
                   f"http://127.0.0.1:{free_port()}", cwd=tmp_path)
    assert dead.returncode == 2 and "start it or fix --to" in dead.stderr, dead.stderr


def test_a_store_set_in_the_settings_file_is_blamed_on_its_entry(tmp_path: Path) -> None:
    """A store from scribbles.toml that cannot be made: the line names the file's entry, not the environment
    variable the user never set; set in the environment, the variable is named (it wins)."""
    root = _project(tmp_path / "proj")
    (root / "run.yaml").write_text("data: {name: dvc, path: data/t.csv, target: y}\n"
                                   "split: {name: kfold, n_splits: 2}\n")
    (root / "scribbles.toml").write_text('[mlflow]\ntracking_uri = "sqlite:////proc/nope/mlflow.db"\n')
    from_file = _cli("run", "run.yaml", cwd=root)
    assert from_file.returncode == 2, from_file.stderr
    assert from_file.stderr.startswith("error: scribbles.toml [mlflow] tracking_uri: cannot create the MLflow store "
                                       "/proc/nope/mlflow.db"), from_file.stderr
    assert "point that entry (or MLFLOW_TRACKING_URI, which wins) at a writable place" in from_file.stderr
    from_env = _cli("run", "run.yaml", cwd=root, MLFLOW_TRACKING_URI="sqlite:////proc/other/mlflow.db")
    assert from_env.returncode == 2 and from_env.stderr.startswith(
        "error: MLFLOW_TRACKING_URI: cannot create the MLflow store /proc/other/mlflow.db"), from_env.stderr
