"""MLflow tracking against real stores: layout, lineage, artifacts, stops, dirty data, rerun, compare, UI.

Stores are a SQLite file per project and one real `mlflow server` (SQLite backend, temporary artifact
folder) on loopback for the test session.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import SCRIBBLES, git, make_dvc_project, run_cli, work_in
from mlflow.tracking import MlflowClient
from scribbles.core import create, default_registry, load_config
from scribbles.core.config import parse_config
from scribbles.core.plan import resolve
from scribbles.flows.experiment import experiment
from scribbles.flows.redact import MASK, mask_params, mask_tree, masked_fields
from scribbles.flows.runs import run_context

REPO = Path(__file__).resolve().parents[1]
#: Small enough to keep each flow to seconds: two folds, tiny GRU.
SMALL = ("split.n_splits=2", "model.hidden=8", "train.epochs=2")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Poll ``url`` until it answers 200; fail with the process output if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited {process.returncode}: {process.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


#: Where each `mlflow_server` keeps its store and artifacts, by URL.
SERVER_ROOTS: dict[str, Path] = {}


def mlflow_server_root(url: str) -> Path:
    return SERVER_ROOTS[url]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 (SQLite backend, temporary artifact folder); yields its URL."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
         "--artifacts-destination", (root / "artifacts").as_uri()],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    SERVER_ROOTS[url] = root
    try:
        wait_for_http(f"{url}/health", process)
        yield url
    finally:
        stop(process)


@pytest.fixture(scope="module")
def shared_project(tmp_path_factory: pytest.TempPathFactory, activity_small) -> Path:
    """A git + DVC project with the small activity slice and the shipped configs (read-only data)."""
    root = make_dvc_project(tmp_path_factory.mktemp("tracking") / "proj", {"activity.csv": activity_small})
    return root


@pytest.fixture
def in_project(shared_project: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: str) -> Path:
    """The shared project as working directory, with its own SQLite store."""
    return work_in(shared_project, monkeypatch)


def config_for(name: str, *overrides: str) -> dict:
    return load_config(REPO / "configs" / f"{name}.yaml", list(overrides)).model_dump(mode="json")


def family(client: MlflowClient, experiment_name: str) -> tuple[object, list]:
    """The latest parent run of an experiment and its fold runs."""
    exp = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    folds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, sorted(folds, key=lambda r: int(r.data.tags["scribbles.fold"]))


def activity_rows(root: Path) -> list[str]:
    return (root / "data" / "activity.csv").read_text().splitlines()[1:]


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


# ---------------------------------------------------------------- secrets


def test_secrets_are_masked_in_params_and_config_artifact(tmp_path: Path, activity_small) -> None:
    """Keys naming a token, password, secret or key, and URL passwords, never reach a tracker."""
    tree = {"db": {"password": "hunter2", "host": "h"}, "api_key": "k-123", "hf_token": "t",
            "client_secret": "s", "keys": None, "uri": "https://bob:hunter2@example.com/x", "lr": 0.1}
    masked = mask_tree(tree)
    assert masked == {"db": {"password": MASK, "host": "h"}, "api_key": MASK, "hf_token": MASK,
                      "client_secret": MASK, "keys": None, "uri": f"https://bob:{MASK}@example.com/x", "lr": 0.1}
    assert tree["db"]["password"] == "hunter2"  # the input is left alone
    assert sorted(masked_fields(masked)) == ["api_key", "client_secret", "db.password", "hf_token", "uri"]
    assert mask_params({"x.token": "abc", "x.n": "3"}) == {"x.token": MASK, "x.n": "3"}

    # Through the flow's own run context: a tracking URI with credentials in a real resolved config.
    data_path = tmp_path / "activity.csv"
    activity_small.to_csv(data_path, index=False)
    raw = yaml.safe_load((REPO / "configs" / "activity.yaml").read_text())
    raw["data"] = {**raw["data"], "name": "file", "path": str(data_path)}
    raw["tracking"] = {"name": "mlflow", "tracking_uri": "http://bob:hunter2@127.0.0.1:9"}
    plan = resolve(parse_config(raw), default_registry())
    ctx = run_context(plan, plan.data.load(), 2, tmp_path)
    assert "hunter2" not in json.dumps(ctx.params) + json.dumps(ctx.config)
    assert "hunter2" not in (tmp_path / "resolved_config.yaml").read_text()
    assert f"bob:{MASK}@" in ctx.params["tracking"]
    assert plan.resolved["tracking"][0]["tracking_uri"].endswith("hunter2@127.0.0.1:9")  # the run still uses it


def test_masking_rules_cover_user_info_queries_json_and_remembered_values() -> None:
    """Every URL's user info, token-like query parameters, JSON documents in strings, new key names; a
    secret masked once is masked in any later text (an error message, a log line)."""
    from scribbles.core.redact import mask_text, mask_value

    assert mask_text("see https://tok123456@h.example/x and http://u:pw-123456@h:1/") == \
        f"see https://{MASK}@h.example/x and http://u:{MASK}@h:1/"
    assert mask_text("https://h/x?team=a&access_token=abcdef123&sig=zz9988") == \
        f"https://h/x?team=a&access_token={MASK}&sig={MASK}"
    assert json.loads(mask_value('{"a": 1, "b": {"client_credentials": "c-123456"}}')) == \
        {"a": 1, "b": {"client_credentials": MASK}}
    assert mask_tree({"db_passwd": "p-123456", "auth": "a-123456", "author": "ann", "max_tokens": None}) == \
        {"db_passwd": MASK, "auth": MASK, "author": "ann", "max_tokens": None}
    assert mask_text("login failed for p-123456 (a-123456)") == f"login failed for {MASK} ({MASK})"


def test_masking_log_handlers_while_other_threads_create_loggers() -> None:
    """Prefect's and the tracker's threads create loggers while a flow masks the handlers; that must not
    fail the run (it raised "dictionary changed size during iteration" in CI)."""
    import logging
    import threading

    from scribbles.core.redact import MASK_RECORDS, mask_log_handlers

    for i in range(3000):
        logging.getLogger(f"scribbles-test-known.{i}")
    errors: list[RuntimeError] = []
    creator = threading.Thread(target=lambda: [logging.getLogger(f"scribbles-test-new.{i}") for i in range(30000)],
                               daemon=True)
    handler = logging.StreamHandler()
    logging.getLogger("scribbles-test-known.0").addHandler(handler)
    creator.start()
    try:
        while creator.is_alive():
            try:
                mask_log_handlers()
            except RuntimeError as exc:
                errors.append(exc)
    finally:
        creator.join()
        logging.getLogger("scribbles-test-known.0").removeHandler(handler)
    assert errors == []
    assert MASK_RECORDS in handler.filters


KEEPER = """
    from pydantic import BaseModel, ConfigDict
    from scribbles.core import Tracker, hookimpl

    class Keeper(Tracker):
        \"\"\"A tracker that holds credentials in its params, as one for a real service would.\"\"\"
        name = "keeper"
        class Params(BaseModel):
            model_config = ConfigDict(extra="forbid")
            passwd: str = ""
            credentials: str = ""
            auth: str = ""
            endpoint: str = ""
            webhook: str = ""
            options: str = ""

    @hookimpl
    def scribbles_techniques():
        return [Keeper]
"""


def _prefect_files() -> list[Path]:
    """The files of the session's Prefect database (SQLite, with its write-ahead log)."""
    from prefect.settings import get_current_settings

    url = str(get_current_settings().server.database.connection_url.get_secret_value()
              if hasattr(get_current_settings().server.database.connection_url, "get_secret_value")
              else get_current_settings().server.database.connection_url)
    database = Path(url.split(":///", 1)[1])
    return [p for p in database.parent.glob(database.name + "*") if p.is_file()]


def test_planted_secrets_are_found_nowhere_a_run_writes(tmp_path: Path, shared_project: Path, prefect_api: str,
                                                        mlflow_server: str) -> None:
    """A distinct secret in each place a user may put one (the tracking URI's password, config keys
    passwd/credentials/auth, a URL's user part, a token query parameter, a token inside a JSON string,
    a data.repo URL's password): none is in the run's output, the MLflow store and artifacts, or
    Prefect's database; the run still works with them."""
    from helpers import fake_dist

    secrets = {name: f"{name}-S3CR3T-{os.getpid()}" for name in
               ("uri", "passwd", "credentials", "auth", "user", "query", "json", "repo")}
    site = tmp_path / "site"
    site.mkdir()
    fake_dist(site, "scribbles-keeper", KEEPER)
    config = yaml.safe_load((REPO / "configs" / "activity.yaml").read_text())
    config.update(experiment="planted", split={"name": "group_kfold", "n_splits": 2},
                  model={"name": "gru", "hidden": 8}, train={**config["train"], "epochs": 1}, evaluate={})
    config["tracking"] = [{"name": "mlflow"}, {
        "name": "keeper", "passwd": secrets["passwd"], "credentials": secrets["credentials"], "auth": secrets["auth"],
        "endpoint": f"https://{secrets['user']}@keeper.invalid/v1",
        "webhook": f"https://keeper.invalid/hook?team=a&access_token={secrets['query']}",
        "options": json.dumps({"retries": 2, "nested": {"api_token": secrets["json"]}})}]
    good = tmp_path / "planted.yaml"
    good.write_text(yaml.safe_dump(config))
    bad = tmp_path / "bad_repo.yaml"
    bad.write_text(yaml.safe_dump({**config, "data": {
        **config["data"], "repo": f"https://bob:{secrets['repo']}@127.0.0.1:9/data.git"}}))
    uri = mlflow_server.replace("http://", f"http://alice:{secrets['uri']}@")
    env = {"MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(site), "SCRIBBLES_DISABLE_PLUGIN_AUTOLOAD": "0",
           "PREFECT_API_URL": prefect_api, "PREFECT_LOGGING_LEVEL": "INFO"}
    ran = run_cli("run", str(good), cwd=shared_project, env=env)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert "MLflow parent run" in ran.stdout
    failed = run_cli("run", str(bad), cwd=shared_project, env=env)
    assert failed.returncode in (1, 2) and "data.repo" in failed.stderr, failed.stderr[-2000:]
    client = MlflowClient(mlflow_server)
    parent, _ = family(client, "planted")
    assert parent.info.status == "FINISHED"
    written = {"stdout": ran.stdout + failed.stdout, "stderr": ran.stderr + failed.stderr}
    server_root = Path(mlflow_server_root(mlflow_server))
    for path in [*server_root.rglob("*"), *_prefect_files(), *shared_project.rglob("*")]:
        if path.is_file() and ".git" not in path.parts and ".dvc" not in path.parts:
            written[str(path)] = path.read_bytes().decode("latin-1")
    leaks = {name: [where for where, text in written.items() if secret in text] for name, secret in secrets.items()}
    assert leaks == {name: [] for name in secrets}
    # The places searched are the ones that record the run: Prefect kept the (masked) config with its
    # reference, MLflow the masked params, and the output names the store with the password masked.
    prefect_text = "".join(text for where, text in written.items() if Path(where) in set(_prefect_files()))
    assert "scribbles_config_ref" in prefect_text and "keeper" in prefect_text
    assert any("server.db" in where and "***" in text for where, text in written.items())
    assert f"alice:{MASK}@" in ran.stdout


# ---------------------------------------------------------------- layout, lineage, artifacts (SQLite)


def test_sqlite_store_has_layout_lineage_plots_and_models(in_project: Path) -> None:
    """Parent + folds FINISHED, lineage tags, dataset input, plots, and fold models that reproduce accuracy."""
    result = experiment(config_for("activity", *SMALL, "experiment=layout"))
    client = MlflowClient(f"sqlite:///{in_project / 'mlflow.db'}")
    parent, folds = family(client, "layout")
    assert parent.info.run_id == result["links"]["mlflow_run_id"]
    assert parent.info.status == "FINISHED" and [f.info.status for f in folds] == ["FINISHED"] * 2

    tags = parent.data.tags
    commit = git("rev-parse", "HEAD", cwd=in_project).strip()
    assert tags["scribbles.git_commit"] == commit == tags["mlflow.source.git.commit"]
    assert tags["scribbles.data_version"] == result["data_version"]
    assert (tags["scribbles.splitter"], tags["scribbles.strategy"]) == ("group_kfold", "single")
    assert (tags["scribbles.seed"], tags["scribbles.world_size"]) == ("0", "1")
    assert "scribbles" in json.loads(tags["scribbles.plugins"])
    assert result["data_version"] in tags["mlflow.note.content"]
    assert "scribbles.allow_dirty" not in tags
    dataset = client.get_run(parent.info.run_id).inputs.dataset_inputs[0].dataset
    assert dataset.digest == result["data_version"][:36]
    assert json.loads(dataset.source) == {"path": "data/activity.csv", "rev": None, "md5": result["data_version"],
                                          "repo": None}

    params = parent.data.params
    assert (params["model.hidden"], params["split.n_splits"], params["data.allow_dirty"]) == ("8", "2", "False")
    for name in ("accuracy", "f1_macro"):
        for suffix in ("_mean", "_std", "_tta_mean", "_tta_std"):
            assert f"{name}{suffix}" in parent.data.metrics
    assert parent.data.metrics["accuracy_mean"] == pytest.approx(np.mean([f.data.metrics["accuracy"] for f in folds]))

    assert {"config.yaml", "resolved_config.yaml", "fold_report.json", "plots/learning_curves.png",
            "plots/confusion_matrix.png", "model/MLmodel"} <= artifact_paths(client, parent.info.run_id)
    report = json.loads(Path(client.download_artifacts(parent.info.run_id, "fold_report.json",
                                                       str(in_project))).read_text())
    assert [r["fold"] for r in report] == [0, 1]
    assert sum(r["valid_rows"] for r in report) == len(activity_rows(in_project))
    png = Path(client.download_artifacts(parent.info.run_id, "plots/confusion_matrix.png", str(in_project)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    data = create("data", "dvc", path="data/activity.csv", target="activity", group="subject", time="timestamp",
                  kind="sequence", shape=[32, 3]).load()
    splits = list(create("splitter", "group_kfold", n_splits=2).split(data))
    for fold, run in zip(splits, folds, strict=True):
        assert [m.step for m in client.get_metric_history(run.info.run_id, "valid_loss")] == [0, 1]
        assert {"fold_report.json", "confusion_matrix.json"} <= artifact_paths(client, run.info.run_id)
        matrix = json.loads(Path(client.download_artifacts(run.info.run_id, "confusion_matrix.json",
                                                           str(in_project / f"cm{fold.index}"))).read_text())
        counts = np.array(matrix["counts"])
        assert counts.sum() == len(fold.valid)
        assert np.trace(counts) / counts.sum() == pytest.approx(run.data.metrics["accuracy"])

    # The last fold's model, on the parent, takes raw features (standardisation inside) and
    # reproduces that fold's accuracy.
    import mlflow.pytorch
    import torch

    assert (parent.data.tags["scribbles.model_flavour"], parent.data.tags["scribbles.model_fold"]) == ("pytorch", "1")
    mlmodel = yaml.safe_load(Path(client.download_artifacts(parent.info.run_id, "model/MLmodel",
                                                            str(in_project / "m"))).read_text())
    assert "signature" in mlmodel and "saved_input_example_info" in mlmodel
    model = mlflow.pytorch.load_model(f"runs:/{parent.info.run_id}/model")
    with torch.no_grad():
        predicted = model(torch.from_numpy(data.inputs(splits[1].valid))).argmax(1).numpy()
    accuracy = float((predicted == data.labels(splits[1].valid)).mean())
    assert accuracy == pytest.approx(folds[1].data.metrics["accuracy"], abs=1e-6)


def test_classic_model_is_logged_as_the_flow_hands_it_over(tmp_path: Path, digits_small) -> None:
    """A classic model reaches the tracker as the flow gives it: its estimator inside an EstimatorModule, behind
    the raw-feature standardisation, saved in the ``pytorch`` flavour with a signature and an input example.
    Loaded back, its class probabilities on raw rows are scikit-learn's own ``predict_proba``."""
    import mlflow.pytorch
    import torch
    from scribbles.core.evaluation import EstimatorModule, Standardised
    from scribbles.plugins.trackers.model_log import save_model
    from sklearn.neighbors import KNeighborsClassifier

    x = digits_small.drop(columns="label").to_numpy(dtype=np.float32)
    y = digits_small["label"].to_numpy()
    mean, std = float(x[:300].mean()), float(x[:300].std())
    module = EstimatorModule(KNeighborsClassifier(3), 10).fit((x[:300] - mean) / std, y[:300])
    assert save_model(Standardised(module, mean, std, (1, 8, 8)), x[300:], tmp_path / "model") == "pytorch"
    mlmodel = yaml.safe_load((tmp_path / "model" / "MLmodel").read_text())
    assert "pytorch" in mlmodel["flavors"] and "signature" in mlmodel and "saved_input_example_info" in mlmodel
    loaded = mlflow.pytorch.load_model(str(tmp_path / "model"))
    with torch.no_grad():
        proba = loaded(torch.from_numpy(x[300:])).softmax(-1).numpy()
    reference = KNeighborsClassifier(3).fit((x[:300] - mean) / std, y[:300]).predict_proba((x[300:] - mean) / std)
    np.testing.assert_allclose(proba, reference, atol=1e-5)


# ---------------------------------------------------------------- a real MLflow server


def test_real_mlflow_server(in_project: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An experiment tracked through `mlflow server` over HTTP: runs, metrics and artifacts land there."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    result = experiment(config_for("activity-time", "split.n_splits=2", "model.hidden=8", "train.epochs=1",
                                   "experiment=served"))
    assert result["links"]["mlflow_tracking_uri"] == mlflow_server
    client = MlflowClient(mlflow_server)
    parent, folds = family(client, "served")
    assert parent.info.status == "FINISHED" and len(folds) == 2
    assert all(f.info.status == "FINISHED" for f in folds)
    assert parent.data.tags["scribbles.splitter"] == "time_series"
    assert "accuracy_tta_mean" in parent.data.metrics
    assert {"model/MLmodel", "plots/learning_curves.png"} <= artifact_paths(client, parent.info.run_id)


# ---------------------------------------------------------------- dirty data


def test_dirty_data_refused_before_any_work_then_allowed(tmp_path: Path, activity_small, prefect_api: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """data/ differing from data.dvc: exit 2 naming the file and the fixes; --allow-dirty runs and is tagged."""
    root = make_dvc_project(tmp_path / "proj", {"activity.csv": activity_small})
    (root / "configs").mkdir()
    (root / "configs" / "activity.yaml").write_text((REPO / "configs" / "activity.yaml").read_text())
    changed = root / "data" / "activity.csv"
    text = changed.read_text()
    changed.write_text(text + text.splitlines()[1] + "\n")  # one row twice: the md5 DVC records is stale

    started = time.monotonic()
    refused = run_cli("run", "configs/activity.yaml", cwd=root, env={"PREFECT_API_URL": prefect_api})
    assert refused.returncode == 2, refused.stdout + refused.stderr
    message = refused.stderr
    for fragment in ("data/activity.csv", "differs from what data.dvc records",
                     "dvc checkout --relink --force data.dvc", "dvc add data", "--allow-dirty"):
        assert fragment in message, message
    assert "Traceback" not in message
    assert not (root / "mlflow.db").exists()  # refused before any run was opened
    assert time.monotonic() - started < 60

    work_in(root, monkeypatch)
    result = experiment(config_for("activity", "split.n_splits=2", "model.hidden=8", "train.epochs=1",
                                   "experiment=dirty"), allow_dirty=True)
    actual = hashlib.md5(changed.read_bytes()).hexdigest()
    assert result["data_version"] == actual
    parent, _ = family(MlflowClient(f"sqlite:///{root / 'mlflow.db'}"), "dirty")
    assert parent.data.tags["scribbles.allow_dirty"] == "true"
    assert parent.data.tags["scribbles.data_version"] == actual
    assert parent.data.params["data.allow_dirty"] == "True"


# ---------------------------------------------------------------- SIGTERM


def test_sigterm_mid_epoch_leaves_no_run_running(in_project: Path, prefect_api: str) -> None:
    """`scribbles run` stopped by SIGTERM while a fold trains: every run KILLED, the process exits promptly."""
    store = f"sqlite:///{in_project / 'sigterm.db'}"
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": store}
    process = subprocess.Popen(
        [SCRIBBLES, "run", str(REPO / "configs" / "activity.yaml"), "--set", "train.epochs=100000",
         "--set", "split.n_splits=2", "--set", "experiment=sigterm"],
        cwd=in_project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    client = MlflowClient(store)
    try:
        deadline = time.monotonic() + 240
        fold_run = None
        while fold_run is None and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(1)
            exp = client.get_experiment_by_name("sigterm") if (in_project / "sigterm.db").exists() else None
            if exp is not None:
                runs = client.search_runs([exp.experiment_id])
                fold_run = next((r for r in runs if "mlflow.parentRunId" in r.data.tags), None)
        assert fold_run is not None, "no fold run appeared"
        while not client.get_metric_history(fold_run.info.run_id, "train_loss") and time.monotonic() < deadline:
            time.sleep(0.5)  # an epoch or two in (metrics flush every 10 s; 100000 epochs outlast it): mid-epoch
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        _, err = process.communicate(timeout=60)
        waited = time.monotonic() - sent
    finally:
        stop(process)
    assert process.returncode == 143, err  # 128 + SIGTERM, as a shell reports it
    assert "stopped" in err and "Traceback" not in err
    assert waited < 5
    runs = client.search_runs([client.get_experiment_by_name("sigterm").experiment_id])
    statuses = {r.info.run_id: r.info.status for r in runs}
    assert statuses and set(statuses.values()) == {"KILLED"}, statuses
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert "SIGTERM" in parent.data.tags["scribbles.error"]


# ---------------------------------------------------------------- rerun and compare


def test_rerun_reads_the_old_data_version_and_reproduces_metrics(tmp_path: Path, activity_small,
                                                                prefect_api: str) -> None:
    """After the data change, `rerun` reads the recorded version through DVC; *_mean match exactly; compare."""
    root = make_dvc_project(tmp_path / "proj", {"activity.csv": activity_small})
    (root / "configs").mkdir()
    (root / "configs" / "activity.yaml").write_text((REPO / "configs" / "activity.yaml").read_text())
    env = {"PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    first = run_cli("run", "configs/activity.yaml", *(f"--set={o}" for o in SMALL), "--set=experiment=again",
                    cwd=root, env=env)
    assert first.returncode == 0, first.stderr
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    original, _ = family(client, "again")
    old_commit = git("rev-parse", "HEAD", cwd=root).strip()

    # New data, recorded and committed: the workspace no longer holds the version the run read.
    activity_small.iloc[::2].to_csv(root / "data" / "activity.csv", index=False)
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "data"], cwd=root, check=True)
    git("commit", "-q", "-am", "new data", cwd=root)

    again = run_cli("rerun", original.info.run_id, cwd=root, env=env)
    assert again.returncode == 0, again.stderr
    assert f"from commit {old_commit[:12]}" in again.stdout
    rerun, _ = family(client, "again")
    assert rerun.info.run_id != original.info.run_id
    assert rerun.data.tags["scribbles.rerun_of"] == original.info.run_id
    assert rerun.data.tags["scribbles.data_version"] == original.data.tags["scribbles.data_version"]
    assert rerun.data.params["data.rev"] == old_commit
    means = {k: v for k, v in original.data.metrics.items() if k.endswith("_mean")}
    assert means and {k: rerun.data.metrics[k] for k in means} == means  # exactly, not approximately

    compared = run_cli("compare", "--experiment", "again", "--json", cwd=root, env=env)
    assert compared.returncode == 0, compared.stderr
    table = json.loads(compared.stdout)
    assert table["experiment"] == "again" and table["metrics"] == ["accuracy", "f1_macro"]
    assert [r["run_id"] for r in table["runs"]] == [rerun.info.run_id, original.info.run_id]
    assert table["differing_params"] == ["data.rev"]
    row = table["runs"][1]["metrics"]["accuracy"]
    assert row["mean"] == original.data.metrics["accuracy_mean"]
    assert row["tta_gain"] == pytest.approx(original.data.metrics["accuracy_tta_mean"] - row["mean"])
    text = run_cli("compare", cwd=root, env=env)
    assert text.returncode == 0 and "TTA gain" in text.stdout and "data.rev" in text.stdout, text.stderr
    missing = run_cli("rerun", "0123456789abcdef", cwd=root, env=env)
    assert missing.returncode == 2 and "no run '0123456789abcdef'" in missing.stderr


# ---------------------------------------------------------------- the UI


def test_ui_serves_the_store_on_loopback(shared_project: Path) -> None:
    """`scribbles ui --port P` serves MLflow's UI for ./mlflow.db on 127.0.0.1:P."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    process = subprocess.Popen([SCRIBBLES, "ui", "--port", str(port)], cwd=shared_project, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert "MLflow" in response.read().decode()
    finally:
        stop(process)
    assert (shared_project / "mlflow.db").exists()


def test_verbs_read_a_run_in_the_store_its_config_named(tmp_path: Path, activity_small, prefect_api: str) -> None:
    """A config's own store: `rerun`, `compare A B`, `promote` (given a fold run's id) and `resume` find the run
    there without being told, the rerun lands beside it, `compare` lists that store with --tracking-uri; no
    default store is created."""
    root = make_dvc_project(tmp_path / "proj", {"activity.csv": activity_small})
    own = root / "elsewhere" / "own.db"
    own.parent.mkdir()  # a store's folder must exist: a typo in it made a new, empty store
    config = yaml.safe_load((REPO / "configs" / "activity.yaml").read_text())
    config["tracking"] = [{"name": "mlflow", "tracking_uri": f"sqlite:///{own}"}]
    config["experiment"] = "own-store"
    (root / "own.yaml").write_text(yaml.safe_dump(config))
    default = root / "default.db"
    env = {"PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": f"sqlite:///{default}"}
    first = run_cli("run", "own.yaml", *(f"--set={o}" for o in SMALL), cwd=root, env=env)
    assert first.returncode == 0, first.stderr
    client = MlflowClient(f"sqlite:///{own}")
    original, _ = family(client, "own-store")
    run_id = original.info.run_id
    assert f"{run_id}\tsqlite:///{own}" in (root / ".scribbles" / "stores.tsv").read_text()

    again = run_cli("rerun", run_id, cwd=root, env=env)
    assert again.returncode == 0, again.stderr
    rerun, _ = family(client, "own-store")
    assert rerun.data.tags["scribbles.rerun_of"] == run_id
    assert not default.exists()  # nothing went to the default store

    paired = run_cli("compare", run_id, rerun.info.run_id, "--json", cwd=root, env=env)
    assert paired.returncode == 0, paired.stderr
    assert json.loads(paired.stdout)["a"] == run_id
    listed = run_cli("compare", "--tracking-uri", f"sqlite:///{own}", "--json", cwd=root, env=env)
    assert listed.returncode == 0, listed.stderr
    assert {r["run_id"] for r in json.loads(listed.stdout)["runs"]} == {run_id, rerun.info.run_id}
    fold = client.search_runs([original.info.experiment_id], f"tags.\"mlflow.parentRunId\" = '{run_id}'")[0]
    promoted = run_cli("promote", fold.info.run_id, "--alias", "champion", cwd=root, env=env)  # its parent
    assert promoted.returncode == 0, promoted.stderr
    assert client.get_model_version_by_alias("own-store", "champion").run_id == run_id
    same = run_cli("compare", run_id, fold.info.run_id, cwd=root, env=env)
    assert same.returncode == 2 and "give two different runs" in same.stderr, same.stderr
    finished = run_cli("resume", run_id, cwd=root, env=env)  # found where it was written: it is FINISHED
    assert finished.returncode == 2 and f"run {run_id} already FINISHED" in finished.stderr, finished.stderr
    elsewhere = run_cli("resume", run_id, "--tracking-uri", f"sqlite:///{own}x", cwd=root, env=env)
    assert elsewhere.returncode == 2 and "--tracking-uri: there is no MLflow store" in elsewhere.stderr
    assert not default.exists()


def test_a_stop_while_a_new_store_is_made_leaves_it_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in the middle of MLflow's migrations of a new SQLite store (the first run in a project, on a
    machine with no empty tables kept yet): the KeyboardInterrupt comes once the tables are made, and the
    store works for the next run. (Cut short, the store was left half made: every later run failed with
    "table ... already exists".)"""
    from scribbles.plugins.trackers.store import empty_tables, prepare_store

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the migrations run here, not a copy
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    statements = []

    def stop_midway(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)
        if len(statements) == 40:  # well inside the migrations: the user's Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    event.listen(Engine, "before_cursor_execute", stop_midway)
    try:
        with pytest.raises(KeyboardInterrupt):
            prepare_store(uri)
    finally:
        event.remove(Engine, "before_cursor_execute", stop_midway)
    assert len(statements) > 40, "the migrations went on after the stop"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("after-the-stop"))
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    kept = empty_tables()
    assert kept is not None and not list(kept.parent.glob("*.part")), "the kept tables were left half made"


def test_a_new_store_made_from_the_kept_tables_is_the_store_mlflow_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new store starts as a copy of the empty tables MLflow made once (not its migrations again): the
    same tables, migration version and rows as a store MLflow makes in place, its default experiment in
    this store's own artifact place, and runs write to it."""
    import sqlite3

    from scribbles.plugins.trackers.store import empty_tables, prepare_store

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "mlflow").mkdir()
    monkeypatch.chdir(tmp_path / "mlflow")

    def content(path: Path) -> tuple[list[str], dict[str, list[tuple[object, ...]]]]:
        with contextlib.closing(sqlite3.connect(path)) as db:
            # Each statement's lines sorted: MLflow's own migrations give a table's constraints in any order.
            schema = sorted(str(sorted(line.strip(" ,") for line in (row[0] or "").split("\n")))
                            for row in db.execute("SELECT sql FROM sqlite_master"))
            tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            rows = {table: sorted(map(tuple, db.execute(f'SELECT * FROM "{table}"'))) for table in tables}
        for row in rows["experiments"]:  # creation times differ; the rest must not
            assert row[0] == 0 and row[1] == "Default"
        rows["experiments"] = [row[:4] for row in rows["experiments"]]
        return schema, rows

    in_place = tmp_path / "in_place.db"
    MlflowClient(f"sqlite:///{in_place}").search_experiments()  # MLflow's own migrations, no copy
    copied = tmp_path / "copied.db"
    prepare_store(f"sqlite:///{copied}")
    assert empty_tables() is not None, "no empty tables were kept for the next new store"
    assert content(copied) == content(in_place)
    client = MlflowClient(f"sqlite:///{copied}")
    assert client.get_experiment("0").artifact_location == str(tmp_path / "mlflow" / "mlruns" / "0")
    run = client.create_run(client.create_experiment("from-the-copy"))
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
