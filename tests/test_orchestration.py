"""Prefect orchestration: caching across runs, sweeps, resume, parallel folds (process pool, Dask), serve.

Everything runs for real: Prefect flows (the session's server, or `prefect server start` on loopback for
the schedules), SQLite MLflow stores, a DVC project, Dask scheduler and worker processes.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import SCRIBBLES, git, make_dvc_project, run_cli, work_in
from mlflow.tracking import MlflowClient
from scribbles.flows.experiment import experiment
from scribbles.flows.fold_cache import Inputs, code_version, explain
from scribbles.flows.prefect_server import free_port, healthy, local_server
from scribbles.flows.prefect_server import stop as stop_process

#: Two folds of a small MLP: seconds per run.
CONFIG: dict[str, Any] = {
    "experiment": "orchestration",
    "data": {"name": "dvc", "path": "data/activity.csv", "target": "activity", "group": "subject",
             "time": "timestamp"},
    "split": {"name": "group_kfold", "n_splits": 2},
    "model": {"name": "mlp", "hidden": [16]},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.003},
}


def config(**changes: Any) -> dict[str, Any]:
    """CONFIG with top-level sections replaced or (for dicts) updated."""
    out = json.loads(json.dumps(CONFIG))
    for key, value in changes.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and key in out else value
    return out


@pytest.fixture
def project(tmp_path: Path, activity_small, monkeypatch: pytest.MonkeyPatch, prefect_api: str) -> Path:
    """A git + DVC project of its own (the working directory) with its own SQLite store."""
    root = make_dvc_project(tmp_path / "proj", {"activity.csv": activity_small})
    return work_in(root, monkeypatch)


def store(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def children(client: MlflowClient, parent: str) -> list[Any]:
    """The runs nested directly under ``parent``, fold runs sorted by fold."""
    runs = client.search_runs([client.get_run(parent).info.experiment_id],
                              f"tags.\"mlflow.parentRunId\" = '{parent}'", max_results=1000)
    return sorted(runs, key=lambda r: (int(r.data.tags.get("scribbles.fold", -1)), r.info.start_time))


# ---------------------------------------------------------------- keys and reasons


def test_explain_shows_what_differs_and_code_version_tracks_the_code_that_trains(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reasons name each change by the part that differs; the code version follows scribbles' and the
    plugins' source (an edit without a new version too), not the user's repository commit."""
    from helpers import fake_dist

    before = Inputs({"train.lr": "0.01", "model.name": "mlp"}, "aaa", "c1", "{}")
    assert explain(Inputs({"train.lr": "0.02", "model.name": "mlp"}, "aaa", "c1", "{}"), before) == \
        "train.lr 0.01 -> 0.02"
    both = explain(Inputs({"train.lr": "0.01", "model.name": "mlp"}, "bbb", "c2", "{}"), before)
    assert "data changed (aaa -> bbb)" in both and "code changed (c1 -> c2)" in both
    assert before.key(0) != before.key(1) and before.key(0) == Inputs(dict(before.params), "aaa", "c1", "{}").key(0)
    long_before = Inputs({}, "0123456789abcdef" * 2, "X" * 40 + "1", "{}")
    why = explain(Inputs({}, "0123456789abcdef" + "f" * 16, "X" * 40 + "2", "{}"), long_before)
    assert "(…ef0123456789… -> …efffffffffff…)" in why and "(…XX1 -> …XX2)" in why, why
    # A parameter set, unset or recorded as empty text never shows as a blank ("evaluate.tta  -> (unset)").
    blank = explain(Inputs({"evaluate.tta.chunk": "", "evaluate.tta": "{}", "evaluate.tta.merge": ""}, "aaa", "c1",
                           "{}"), Inputs({"evaluate.tta.chunk": "4"}, "aaa", "c1", "{}"))
    assert blank == "evaluate.tta (unset) -> {}; evaluate.tta.chunk 4 -> (empty)", blank  # unset -> empty: no change

    monkeypatch.chdir(tmp_path)
    git("init", "-q", cwd=tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    fake_dist(site, "scribbles-keeper", "from scribbles.core import hookimpl\nA = 1\n")
    monkeypatch.syspath_prepend(str(site))
    clean = code_version()
    assert json.loads(clean)["scribbles-keeper"].startswith("0.1.0 src ")
    (tmp_path / "configs.yaml").write_text("a config, a note: not code\n")
    git("add", "-A", cwd=tmp_path)
    git("commit", "-qm", "a commit", cwd=tmp_path)
    assert code_version() == clean
    (site / "scribbles_keeper.py").write_text("from scribbles.core import hookimpl\nA = 2\n")  # same version
    edited = code_version()
    assert edited != clean
    changed = explain(Inputs({}, "d", edited, "{}"), Inputs({}, "d", clean, "{}"))
    assert changed.startswith("code changed (scribbles-keeper ") and "scribbles " not in changed, changed
    # The version whole and each hash's start, as README shows it (it printed "…c 8699… -> …c e711…").
    before, after = (json.loads(v)["scribbles-keeper"].split(" src ")[1][:8] for v in (clean, edited))
    assert changed == f"code changed (scribbles-keeper 0.1.0 src {before}… -> 0.1.0 src {after}…)", changed


# ---------------------------------------------------------------- caching across runs


def test_identical_rerun_is_cached_a_changed_one_says_why_and_force_retrains(project: Path) -> None:
    client = store(project)
    start = time.perf_counter()
    first = experiment(config())
    first_s = time.perf_counter() - start
    assert [r["reason"] for r in first["reuse"]] == ["first run of this fold"] * 2
    trained = {int(r.data.tags["scribbles.fold"]): r for r in children(client, first["links"]["mlflow_run_id"])}
    assert all("scribbles.cached_from" not in r.data.tags for r in trained.values())

    start = time.perf_counter()
    second = experiment(config())
    second_s = time.perf_counter() - start
    print(f"identical re-run {second_s:.2f} s against the first run {first_s:.2f} s")
    assert [r["mode"] for r in second["reuse"]] == ["cached", "cached"]
    assert second["summary"] == first["summary"]
    cached = children(client, second["links"]["mlflow_run_id"])
    assert len(cached) == 2 and {r.info.status for r in cached} == {"FINISHED"}
    for run in cached:
        fold = int(run.data.tags["scribbles.fold"])
        assert run.data.tags["scribbles.cached_from"] == trained[fold].info.run_id
        assert run.data.metrics["accuracy"] == trained[fold].data.metrics["accuracy"]
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert [m.step for m in history] == [0, 1]  # the learning curve comes along
    parent = client.get_run(second["links"]["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["accuracy_mean"] == first["summary"]["accuracy_mean"]

    changed = experiment(config(train={"lr": 0.01}))
    assert [r["mode"] for r in changed["reuse"]] == ["", ""]
    assert [r["reason"] for r in changed["reuse"]] == ["train.lr 0.003 -> 0.01"] * 2
    for run in children(client, changed["links"]["mlflow_run_id"]):
        assert "scribbles.cached_from" not in run.data.tags
        assert run.data.tags["scribbles.why"] == "train.lr 0.003 -> 0.01"

    forced = experiment(config(), force=True)
    assert [r["reason"] for r in forced["reuse"]] == ["asked to train again (--force, or `scribbles rerun`)"] * 2
    runs = children(client, forced["links"]["mlflow_run_id"])
    assert all("scribbles.cached_from" not in r.data.tags for r in runs)

    (project / "notes.md").write_text("a note\n")  # committing in the user's project changes no code
    git("add", "-A", cwd=project)
    git("commit", "-qm", "notes", cwd=project)
    again = experiment(config())
    assert [r["mode"] for r in again["reuse"]] == ["cached", "cached"]


def _artifact_file(client: MlflowClient, run_id: str, name: str) -> Path:
    """The local file of one artifact of a run in a file-backed artifact store."""
    from urllib.parse import urlparse

    return Path(urlparse(client.get_run(run_id).info.artifact_uri).path) / name


def test_a_modified_or_deleted_cache_entry_is_not_reused(project: Path) -> None:
    """Editing a cached fold_result.json (accuracy 0.999) or deleting the runs it came from with MLflow's
    own delete_run: the next identical run trains those folds again and says why."""
    client = store(project)
    first = experiment(config())
    trained = {int(r.data.tags["scribbles.fold"]): r for r in children(client, first["links"]["mlflow_run_id"])}
    assert all(r.data.tags["scribbles.sha256.fold_result.json"] for r in trained.values())
    second = experiment(config())
    assert [r["mode"] for r in second["reuse"]] == ["cached", "cached"]

    tampered = _artifact_file(client, trained[0].info.run_id, "fold_result.json")
    record = json.loads(tampered.read_text())
    record["metrics"]["accuracy"] = 0.999
    tampered.write_text(json.dumps(record))
    third = experiment(config())
    assert third["reuse"][0]["mode"] == "" and third["reuse"][1]["mode"] == "cached"
    assert third["reuse"][0]["reason"] == f"cached result of run {trained[0].info.run_id} was modified"
    assert third["folds"][0]["accuracy"] != 0.999
    assert third["folds"][0]["accuracy"] == first["folds"][0]["accuracy"]  # trained again, same result

    for run in [*trained.values(), client.get_run(first["links"]["mlflow_run_id"])]:
        client.delete_run(run.info.run_id)
    fourth = experiment(config())
    assert fourth["reuse"][1]["mode"] == "" and "was deleted" in fourth["reuse"][1]["reason"]
    assert trained[1].info.run_id in fourth["reuse"][1]["reason"]
    assert fourth["reuse"][0]["mode"] == "cached"  # fold 0's newer source (the third run) is intact
    assert fourth["reuse"][0]["source"] not in {r.info.run_id for r in trained.values()}


def test_cli_run_prints_why_each_fold_ran(project: Path, prefect_api: str) -> None:
    (project / "exp.yaml").write_text(yaml.safe_dump(CONFIG))
    env = {"PREFECT_API_URL": prefect_api}
    first = run_cli("run", "exp.yaml", cwd=project, env=env)
    assert first.returncode == 0, first.stderr
    assert "fold 0 trained: first run of this fold" in first.stdout
    same = run_cli("run", "exp.yaml", cwd=project, env=env)
    assert "fold 1 reused: cached from run" in same.stdout
    again = run_cli("run", "exp.yaml", "--set", "train.epochs=3", cwd=project, env=env)
    assert again.returncode == 0, again.stderr
    assert "fold 0 trained: train.epochs 2 -> 3" in again.stdout


# ---------------------------------------------------------------- sweeps


def test_grid_sweep_is_one_parent_four_trials_two_folds_each(project: Path, prefect_api: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    sweep = {"grid": {"train.lr": [0.001, 0.01], "model.hidden": [[8], [16]]}}
    result = experiment(config(experiment="swept", sweep=sweep))
    client = store(project)
    exp = client.get_experiment_by_name("swept")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    tops = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(tops) == 1 and tops[0].data.tags["scribbles.sweep"] == "grid"
    sweep_id = tops[0].info.run_id
    assert result["links"]["mlflow_run_id"] == sweep_id
    trials = children(client, sweep_id)
    assert len(trials) == 4
    assignments = set()
    for trial in trials:
        folds = children(client, trial.info.run_id)
        assert len(folds) == 2 and {f.data.tags["scribbles.fold"] for f in folds} == {"0", "1"}
        assignments.add((trial.data.params["train.lr"], trial.data.params["model.hidden"]))
        # Every trial keeps the fold timeline (drawn once, since all trials share the folds).
        assert "fold_timeline.png" in {a.path for a in client.list_artifacts(trial.info.run_id)}
    assert assignments == {("0.001", "[8]"), ("0.001", "[16]"), ("0.01", "[8]"), ("0.01", "[16]")}
    assert {r.info.status for r in runs} == {"FINISHED"} and len(runs) == 1 + 4 + 8
    # Ranked best first, recorded on the sweep run.
    means = [t["summary"]["accuracy_mean"] for t in result["trials"]]
    assert means == sorted(means, reverse=True)
    ranked = json.loads(Path(client.download_artifacts(sweep_id, "trials.json", str(project))).read_text())
    assert [t["run_id"] for t in ranked] == [t["links"]["mlflow_run_id"] for t in result["trials"]]
    assert client.get_run(sweep_id).data.metrics["accuracy_mean"] == means[0]
    # Upstream work once: one load-data and one make-folds task run in the sweep's flow run.
    with get_client(sync_client=True) as prefect:
        flow_run = prefect.read_flow_runs(sort="START_TIME_DESC", limit=1)[0]
        tasks = prefect.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
    names = [t.name.rsplit("-", 1)[0] for t in tasks]
    assert names.count("load-data") == 1 and names.count("make-folds") == 1 and names.count("train-fold") == 8


def test_bad_sweeps_are_refused_before_any_work(project: Path, prefect_api: str) -> None:
    cases = {
        "sweep: {grid: {train.lrr: [0.1]}}": "train.lrr",
        "sweep: {random: {train.lr: {low: 0.001, high: 0.1, log: true}}}": "sweep.trials",
        "sweep: {grid: {train.lr: []}}": "sweep.grid.train.lr",
        "sweep: {grid: {model.name: [mlp, nosuchmodel]}}": "nosuchmodel",
    }
    for text, field in cases.items():
        (project / "bad.yaml").write_text(yaml.safe_dump({k: v for k, v in CONFIG.items()}) + text + "\n")
        done = run_cli("run", "bad.yaml", cwd=project, env={"PREFECT_API_URL": prefect_api})
        assert done.returncode == 2, (text, done.stdout, done.stderr)
        assert field in done.stderr and "Traceback" not in done.stderr, (text, done.stderr)
    assert not (project / "mlflow.db").exists()  # nothing started


def test_random_sweep_draws_are_seeded(project: Path) -> None:
    from scribbles.core.config import parse_config
    from scribbles.core.sweep import trials

    raw = config(sweep={"random": {"train.lr": {"low": 1e-4, "high": 1e-1, "log": True},
                                   "model.hidden": [[8], [16], [32]]}, "trials": 5, "seed": 3})
    drawn = [a for a, _ in trials(parse_config(raw))]
    assert drawn == [a for a, _ in trials(parse_config(raw))] and len(drawn) == 5
    assert all(1e-4 <= a["train.lr"] <= 1e-1 and a["model.hidden"] in ([8], [16], [32]) for a in drawn)
    assert drawn != [a for a, _ in trials(parse_config({**raw, "sweep": {**raw["sweep"], "seed": 4}}))]


# ---------------------------------------------------------------- resume


def test_resume_after_sigkill_finishes_the_same_parent_without_retraining(project: Path, prefect_api: str) -> None:
    (project / "exp.yaml").write_text(yaml.safe_dump(config(split={"n_splits": 3}, train={"epochs": 30})))
    # Folds trained in the command's process: a fold worker (flows/fold_worker.py) runs ahead of the flow, and
    # its finished folds were all logged before the kill could land (tests/test_fold_worker.py stops one).
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "SCRIBBLES_FOLD_WORKER": "0"}
    client = store(project)
    process = subprocess.Popen([SCRIBBLES, "run", "exp.yaml"], cwd=project, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, first = time.monotonic() + 240, None
        while first is None and time.monotonic() < deadline:
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.5)
            if (project / "mlflow.db").exists() and client.get_experiment_by_name("orchestration"):
                exp = client.get_experiment_by_name("orchestration").experiment_id
                done = client.search_runs([exp], "tags.\"scribbles.fold\" = '0' and attributes.status = 'FINISHED'")
                first = done[0] if done else None
        assert first is not None, "fold 0 never finished"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    parent_id = first.data.tags["mlflow.parentRunId"]
    assert client.get_run(parent_id).info.status == "RUNNING"  # SIGKILL cannot be caught

    resumed = run_cli("resume", parent_id, cwd=project, env={"PREFECT_API_URL": prefect_api})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "fold 0 kept: finished before the stop" in resumed.stdout
    # The folds the stop cut or never reached are trained for that reason (it named an older run's config).
    assert "fold 2 trained: not finished before the stop" in resumed.stdout, resumed.stdout
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and "accuracy_mean" in parent.data.metrics
    assert parent.data.tags["scribbles.resumed"] == "true"
    runs = children(client, parent_id)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert sorted(int(r.data.tags["scribbles.fold"]) for r in finished) == [0, 1, 2]
    assert [r.info.run_id for r in finished if r.data.tags["scribbles.fold"] == "0"] == [first.info.run_id]
    assert all(r.info.status != "RUNNING" for r in runs)  # the fold the kill cut short is ended, not left
    assert all(r.data.tags.get("scribbles.superseded") == "true" for r in runs if r.info.status != "FINISHED")
    # Only the missing folds were trained: the mean covers all three folds.
    accuracies = [r.data.metrics["accuracy"] for r in finished]
    assert parent.data.metrics["accuracy_mean"] == pytest.approx(sum(accuracies) / 3)

    again = run_cli("resume", parent_id, cwd=project, env={"PREFECT_API_URL": prefect_api})
    assert again.returncode == 2 and "already FINISHED" in again.stderr and "Traceback" not in again.stderr


# ---------------------------------------------------------------- parallel folds


def test_parallel_folds_in_processes_match_one_by_one(project: Path) -> None:
    one = experiment(config(), force=True)
    two = experiment(config(train={"parallel_folds": 2}), force=True)
    assert two["folds"] == one["folds"]
    runs = children(store(project), two["links"]["mlflow_run_id"])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert all(len(store(project).get_metric_history(r.info.run_id, "valid_loss")) == 2 for r in runs)


@pytest.fixture
def dask_cluster(tmp_path: Path, prefect_api: str) -> Iterator[str]:
    """A Dask scheduler and two single-thread workers, each its own process; yields the address."""
    port = free_port(None)
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PREFECT_API_URL": prefect_api}  # workers report task runs to the same server
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    workers = [subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-dashboard",
         "--local-directory", str(tmp_path / f"worker-{i}")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True) for i in range(2)]
    try:
        from distributed import Client

        with Client(address, timeout=120) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for process in [*workers, scheduler]:
            stop_process(process, grace=10)


def test_parallel_folds_on_a_dask_cluster_match_one_by_one(project: Path, dask_cluster: str) -> None:
    one = experiment(config(), force=True)
    on_dask = experiment(config(train={"dask_address": dask_cluster}), force=True)
    assert on_dask["folds"] == one["folds"]
    runs = children(store(project), on_dask["links"]["mlflow_run_id"])
    assert {r.info.status for r in runs} == {"FINISHED"} and len(runs) == 2


# ---------------------------------------------------------------- many runs on one store


def test_eight_runs_at_once_on_one_sqlite_store_lose_nothing(project: Path, prefect_api: str) -> None:
    (project / "exp.yaml").write_text(yaml.safe_dump(config(train={"epochs": 3})))
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    processes = [subprocess.Popen([SCRIBBLES, "run", "exp.yaml", "--force", "--set", f"experiment=many-{i % 2}"],
                                  cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(8)]
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, out + err
    client = store(project)
    parents = []
    for name in ("many-0", "many-1"):
        exp = client.get_experiment_by_name(name)
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        assert {r.info.status for r in runs} == {"FINISHED"}
        parents += [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 8
    for parent in parents:
        assert {"accuracy_mean", "accuracy_std", "accuracy_tta_mean"} <= set(parent.data.metrics)
        folds = children(client, parent.info.run_id)
        assert len(folds) == 2
        for fold in folds:
            assert {"accuracy", "accuracy_tta"} <= set(fold.data.metrics)
            assert [m.step for m in client.get_metric_history(fold.info.run_id, "train_loss")] == [0, 1, 2]


# ---------------------------------------------------------------- serve


def parents_of(client: MlflowClient, name: str) -> list[Any]:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], "tags.\"scribbles.schedule\" LIKE '%'", max_results=100)
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def wait_for_runs(client: MlflowClient, name: str, count: int, process: subprocess.Popen, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        done = [r for r in parents_of(client, name) if r.info.status == "FINISHED"]
        if len(done) >= count:
            return done
        time.sleep(2)
    raise AssertionError(f"fewer than {count} finished runs within {timeout} s")


def test_serve_on_a_real_prefect_server_runs_on_schedule_and_stops_on_sigterm(
        project: Path, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    (project / "exp.yaml").write_text(yaml.safe_dump(config(experiment="served")))
    home = {"PREFECT_HOME": str(tmp_path / "prefect-home")}
    with local_server(log=tmp_path / "server.log", env=home) as api:
        env = {**os.environ, **home, "PREFECT_API_URL": api}
        process = subprocess.Popen([SCRIBBLES, "serve", "exp.yaml", "--interval", "20"], cwd=project, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for_runs(store(project), "served", 2, process, timeout=240)
            with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as prefect:
                deployment = prefect.read_deployment_by_name("scribbles-experiment/served")
                assert deployment.schedules[0].schedule.interval.total_seconds() == 20
                flow_runs = prefect.read_flow_runs()
            completed = [r for r in flow_runs if r.deployment_id == deployment.id and r.state.is_completed()]
            assert len(completed) >= 2
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=60)
        finally:
            stop_process(process)
    assert process.returncode == 0, err
    assert "stopped serving" in out and "Traceback" not in err
    assert all(r.info.status != "RUNNING" for r in parents_of(store(project), "served"))


def test_serve_stopped_while_a_scheduled_run_trains_names_the_resume_command(project: Path, tmp_path: Path) -> None:
    """Ctrl-C to `scribbles serve` while its run trains: the run ends KILLED in its own process, and serve says
    how to finish it and exits 130, as `run` does (it printed `stopped serving` and exited 0)."""
    (project / "exp.yaml").write_text(yaml.safe_dump(config(experiment="served-cut", train={"epochs": 100_000})))
    home = {"PREFECT_HOME": str(tmp_path / "prefect-home")}
    with local_server(log=tmp_path / "server.log", env=home) as api:
        env = {**os.environ, **home, "PREFECT_API_URL": api}
        # A short interval: the first run is due at once (the next ones, due while it trains, are skipped).
        process = subprocess.Popen([SCRIBBLES, "serve", "exp.yaml", "--interval", "5"], cwd=project, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while not [r for r in parents_of(store(project), "served-cut")
                       if children(store(project), r.info.run_id)]:  # the run trains its first fold
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "no scheduled run started within 240 s"
                time.sleep(1)
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole process group
            out, err = process.communicate(timeout=120)
        finally:
            stop_process(process)
    (parent,) = parents_of(store(project), "served-cut")
    assert process.returncode == 130, out + err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(" ")]
    assert lines[-1] == f"stopped serving; finish the run it stopped with `scribbles resume {parent.info.run_id}`", err
    # Ended KILLED by its own process or, when Prefect's runner killed that process first, by serve.
    assert store(project).get_run(parent.info.run_id).info.status == "KILLED"
    assert all(r.info.status != "RUNNING" for r in children(store(project), parent.info.run_id))


def flow_run_states(api: str) -> list[str]:
    """The state type of every flow run the Prefect server at ``api`` knows (Prefect's own client)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as prefect:
        return [run.state.type.value for run in prefect.read_flow_runs() if run.state is not None]


@pytest.mark.parametrize("overlap", ["queue", "skip"])
def test_serve_without_a_server_queues_or_skips_overlapping_runs(overlap: str, project: Path,
                                                                  tmp_path: Path) -> None:
    """No PREFECT_API_URL: scribbles runs its own Prefect server. Runs last longer than the interval: under
    ``queue`` a run due while one runs waits its turn (none cancelled); under ``skip`` it is cancelled. Either
    way runs never overlap, and the server scribbles started is gone with it."""
    name = f"overlap-{overlap}"
    (project / "exp.yaml").write_text(yaml.safe_dump(config(experiment=name, train={"epochs": 8})))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    log = tmp_path / "serve.out"
    with open(log, "w") as stdout:
        process = subprocess.Popen([SCRIBBLES, "serve", "exp.yaml", "--interval", "2", "--overlap", overlap],
                                   cwd=project, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
    try:
        runs = wait_for_runs(store(project), name, 2, process, timeout=240)
        port = int(log.read_text().split("Prefect server on http://127.0.0.1:")[1].split()[0].rstrip(")"))
        states = flow_run_states(f"http://127.0.0.1:{port}/api")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        stop_process(process)
    assert process.returncode == 0, err
    if overlap == "skip":
        assert "CANCELLED" in states, states
    else:
        assert "CANCELLED" not in states and states.count("COMPLETED") >= 2, states
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans)), spans
    assert not healthy(f"http://127.0.0.1:{port}/api")
