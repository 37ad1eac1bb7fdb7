"""Team mode on real servers: PostgreSQL, `mlflow server` and `prefect server` on it, a DVC remote folder,
two working copies of one project (separate HOME and checkout: two "machines") writing at once.

Skipped, with the reason, only where PostgreSQL cannot start. One module-scoped set-up runs everything
concurrently (8 runs on the servers, a laptop run on SQLite, a scheduled deployment served from a third
process); the tests then read what it left. ``SCRIBBLES_TEAM_TIMINGS`` names a file for the timings.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import SCRIBBLES, git, make_dvc_project
from mlflow.tracking import MlflowClient
from scribbles.testing.team import metric_counts

pytestmark = pytest.mark.timeout(900)

#: Two folds, two epochs of a tiny MLP: the runs are about orchestration, not learning.
CONFIG: dict[str, Any] = {
    "experiment": "team",
    "data": {"name": "dvc", "path": "data/activity.csv", "target": "activity", "group": "subject",
             "time": "timestamp"},
    "split": {"name": "group_kfold", "n_splits": 2},
    "model": {"name": "mlp", "hidden": [8]},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.003},
}
#: The learning rates each working copy runs (4 + 4 concurrent runs); LAPTOP_LR goes to a laptop SQLite store.
RATES = {"a": ["0.001", "0.002", "0.003", "0.004"], "b": ["0.011", "0.012", "0.013", "0.014"]}
LAPTOP_LR = "0.021"
#: Environment a developer's shell may hold; each process here gets its settings from scribbles.toml only.
CLEARED = ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "SCRIBBLES_DVC_REMOTE", "SCRIBBLES_STUDY_STORAGE",
           "SCRIBBLES_SETTINGS", "PREFECT_HOME")


@dataclass
class Team:
    """The servers, the project's copies, and what the concurrent phase left behind."""

    root: Path
    mlflow: str
    prefect: str
    remote: Path
    copies: dict[str, Path]
    homes: dict[str, Path]
    results: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: The served deployment's COMPLETED flow runs, read while `scribbles serve` still ran (serve removes its
    #: deployment when it stops, and the API then no longer finds runs by deployment name).
    scheduled: list[dict[str, Any]] = field(default_factory=list)

    def env(self, machine: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in CLEARED}
        return {**env, "HOME": str(self.homes[machine]), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra}

    def cli(self, machine: str, *args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SCRIBBLES, *args], cwd=self.copies[machine], env=self.env(machine, **extra),
                              capture_output=True, text=True, timeout=timeout)

    def client(self) -> MlflowClient:
        return MlflowClient(self.mlflow)


def _api(url: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _servers(stack: contextlib.ExitStack, root: Path) -> tuple[str, str]:
    """PostgreSQL, then the MLflow and Prefect servers on it, started side by side."""
    from scribbles.testing.team import Unavailable, mlflow_server, postgres, prefect_server

    try:
        pg = stack.enter_context(postgres(root / "pg"))
    except Unavailable as exc:
        pytest.skip(f"PostgreSQL cannot start here: {exc}")
    started: dict[str, Any] = {}
    stacks = {name: stack.enter_context(contextlib.ExitStack()) for name in ("mlflow", "prefect")}

    def start(name: str, manager: Any) -> None:
        try:
            started[name] = stacks[name].enter_context(manager)
        except BaseException as exc:
            started[name] = exc

    # MLflow's server starts from a thread; Prefect's from this one: local_server has the kernel stop the
    # server when the thread that started it ends (PR_SET_PDEATHSIG follows the thread, not the process).
    thread = threading.Thread(target=start, args=("mlflow", mlflow_server(
        pg.url("mlflow"), root / "artifacts", root / "mlflow-server.log")))
    thread.start()
    # The scheduler looks for due runs every 5 s (Prefect's default is 60 s): the scheduled run comes soon.
    os.environ["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = "5"
    try:
        start("prefect", prefect_server(pg.url("prefect", "asyncpg"), root / "prefect-home",
                                        root / "prefect-server.log"))
    finally:
        os.environ.pop("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", None)
        thread.join()
    for name, value in started.items():
        if isinstance(value, BaseException):
            raise RuntimeError(f"the {name} server did not start: {value}")
    return started["mlflow"], started["prefect"]


def _project(root: Path, team_toml: str, activity_small: Any) -> Path:
    """The team's project: git + DVC, a config and scribbles.toml committed, data pushed to the remote."""
    origin = make_dvc_project(root / "origin", {"activity.csv": activity_small.iloc[::2].reset_index(drop=True)})
    (origin / "team.yaml").write_text(yaml.safe_dump(CONFIG))
    (origin / "scribbles.toml").write_text(team_toml)
    with open(origin / ".gitignore", "a") as ignore:  # after DVC's own /data line
        ignore.write("mlflow.db\nlaptop.db*\n.scribbles/\n")
    git("add", "-A", cwd=origin)
    git("commit", "-qm", "team settings", cwd=origin)
    return origin


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, activity_small: Any) -> Iterator[Team]:
    """Servers up, copies cloned and pulled, then every concurrent process run to its end."""
    root = tmp_path_factory.mktemp("team")
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        mlflow, prefect = _servers(stack, root)
        servers_s = time.perf_counter() - start
        remote = root / "dvc-remote"
        remote.mkdir()
        toml = (f'[mlflow]\ntracking_uri = "{mlflow}"\n[prefect]\napi_url = "{prefect}"\n'
                f'[dvc]\nremote = "{remote}"\n')
        origin = _project(root, toml, activity_small)
        homes = {m: root / f"home-{m}" for m in ("origin", "a", "b", "c")}
        for home in homes.values():
            home.mkdir()
        copies = {"origin": origin}
        team = Team(root, mlflow, prefect, remote, copies, homes)
        pushed = team.cli("origin", "data", "push")
        assert pushed.returncode == 0 and "pushed" in pushed.stdout, pushed.stderr
        for machine in ("a", "b", "c"):
            git("clone", "-q", str(origin), str(root / machine), cwd=root)
            copies[machine] = root / machine
        for machine in ("a", "b"):  # machine c stays a fresh clone without data/: rerun reads the remote
            pulled = team.cli(machine, "data", "pull")
            team.results[f"pull-{machine}"] = pulled
        team.timings["servers_s"] = servers_s
        _concurrent(team)
        _second_phase(team)
        team.timings["setup_total_s"] = time.perf_counter() - start
        yield team
        stack.close()
        timings = os.environ.get("SCRIBBLES_TEAM_TIMINGS")
        if timings:
            Path(timings).write_text(json.dumps(team.timings, indent=1))


def _start(team: Team, name: str, machine: str, args: list[str], **extra: str) -> subprocess.Popen[str]:
    """``scribbles ARGS`` in a working copy, its output in files (pipes of many processes could fill and block)."""
    logs = team.root / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / f"{name}.out", "w") as out, open(logs / f"{name}.err", "w") as err:
        return subprocess.Popen([SCRIBBLES, *args], cwd=team.copies[machine], env=team.env(machine, **extra),
                                stdout=out, stderr=err, text=True, start_new_session=True)


def _finish(team: Team, name: str, process: subprocess.Popen[str], timeout: float = 420) -> None:
    """Wait for ``process`` (killed after ``timeout`` s) and keep its result under ``name``."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    logs = team.root / "logs"
    team.results[name] = subprocess.CompletedProcess(process.args, process.returncode, (logs / f"{name}.out")
                                                     .read_text(), (logs / f"{name}.err").read_text())


def _concurrent(team: Team) -> None:
    """8 runs (4 per copy) on the servers, a laptop run on SQLite, and `scribbles serve` from a third process."""
    serve = _start(team, "serve", "a", ["serve", "team.yaml", "--interval", "60", "--set", "experiment=team-scheduled"])
    runs: dict[str, subprocess.Popen[str]] = {}
    start = time.perf_counter()
    for machine, rates in RATES.items():
        for lr in rates:
            runs[f"{machine}-{lr}"] = _start(team, f"{machine}-{lr}", machine, ["run", "team.yaml", "--set",
                                                                             f"train.lr={lr}"])
    laptop = team.copies["a"] / "laptop.db"
    runs["laptop"] = _start(team, "laptop", "a", ["run", "team.yaml", "--set", f"train.lr={LAPTOP_LR}", "--set",
                                                  "experiment=laptop"], MLFLOW_TRACKING_URI=f"sqlite:///{laptop}")
    try:
        for name, process in runs.items():
            _finish(team, name, process)
        team.timings["eight_runs_and_laptop_s"] = time.perf_counter() - start
        team.timings["scheduled_run_s"] = _wait_scheduled(team)
    finally:
        for process in runs.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGTERM)
        _finish(team, "serve", serve, timeout=60)


def _second_phase(team: Team) -> None:
    """Migrate the laptop store; then at once: b repeats a's first run (cache), b repeats the laptop run on the
    server (migrated folds), and c, a clone without data/, reruns the migrated parent (data from the remote)."""
    source_uri = f"sqlite:///{team.copies['a'] / 'laptop.db'}"
    start = time.perf_counter()
    team.results["migrate"] = team.cli("a", "store", "migrate", "--from", source_uri, "--to", team.mlflow)
    team.timings["migrate_s"] = time.perf_counter() - start
    team.results["migrate-again"] = team.cli("a", "store", "migrate", "--from", source_uri, "--to", team.mlflow)
    client = team.client()
    migrated = _parents(client, "laptop")
    team.results["before-cache"] = _parents(client, "team")  # type: ignore[assignment]
    commands = {
        "cache-b": ("b", ["run", "team.yaml", "--set", f"train.lr={RATES['a'][0]}"]),
        "reuse-migrated-b": ("b", ["run", "team.yaml", "--set", f"train.lr={LAPTOP_LR}", "--set",
                                   "experiment=laptop"]),
    }
    if migrated:
        commands["rerun-c"] = ("c", ["rerun", migrated[0].info.run_id])
    start = time.perf_counter()
    running = {name: _start(team, name, machine, args) for name, (machine, args) in commands.items()}
    for name, process in running.items():
        _finish(team, name, process)
    team.timings["cache_reuse_rerun_s"] = time.perf_counter() - start


def _wait_scheduled(team: Team, timeout: float = 120) -> float:
    """Seconds until the served deployment's first run is COMPLETED in the Prefect API (inf: never)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        with contextlib.suppress(OSError):
            team.scheduled = _scheduled_runs(team, "COMPLETED")
            if team.scheduled:
                return time.perf_counter() - start
        time.sleep(2)
    return float("inf")


def _scheduled_runs(team: Team, state: str | None = None) -> list[dict[str, Any]]:
    deployments = _api(team.prefect, "/deployments/filter", {"deployments": {"name": {"any_": ["team-scheduled"]}}})
    if not deployments:
        return []
    # Every deployment of that name (the API returns them in no set order).
    body: dict[str, Any] = {"flow_runs": {"deployment_id": {"any_": [d["id"] for d in deployments]}}}
    if state:
        body["flow_runs"]["state"] = {"type": {"any_": [state]}}
    return list(_api(team.prefect, "/flow_runs/filter", body))


def _parents(client: MlflowClient, experiment: str) -> list[Any]:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    runs = client.search_runs([found.experiment_id], max_results=1000)
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def _folds(client: MlflowClient, parent: Any) -> list[Any]:
    runs = client.search_runs([parent.info.experiment_id], f"tags.\"mlflow.parentRunId\" = '{parent.info.run_id}'")
    return sorted(runs, key=lambda r: int(r.data.tags["scribbles.fold"]))


# ---------------------------------------------------------------- the data follow the team


def test_fresh_clone_pulls_the_data_from_the_team_remote(team: Team) -> None:
    """`scribbles data pull` in a fresh clone gets data/ from the remote; DVC's own status is then clean."""
    for machine in ("a", "b"):
        pulled = team.results[f"pull-{machine}"]
        assert pulled.returncode == 0 and "pulled 2 file(s)" in pulled.stdout, (pulled.stdout, pulled.stderr)
        status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=team.copies[machine],
                                capture_output=True, text=True, env=team.env(machine))
        assert status.returncode == 0 and "up to date" in status.stdout, status.stdout
    assert not (team.copies["c"] / "data" / "activity.csv").exists()  # c never pulled


def test_doctor_names_the_servers_and_remote_and_what_does_not_answer(team: Team) -> None:
    """Doctor prints each server from scribbles.toml and exits 0; a dead Prefect URL makes it exit 1."""
    ok = team.cli("a", "doctor")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"mlflow   {team.mlflow} (MLFLOW_TRACKING_URI from " in ok.stdout
    assert f"prefect  {team.prefect} (PREFECT_API_URL from " in ok.stdout
    assert f"dvc      remote team at {team.remote}" in ok.stdout and "all answer" in ok.stdout
    from scribbles.flows.prefect_server import free_port

    dead = f"http://127.0.0.1:{free_port()}/api"
    bad = team.cli("a", "doctor", PREFECT_API_URL=dead)  # the environment wins over the file
    assert bad.returncode == 1
    assert f"prefect  {dead} (PREFECT_API_URL from environment): NOT OK" in bad.stdout
    assert "failed: not answering: prefect;" in bad.stdout


# ---------------------------------------------------------------- many writers on the servers


def test_eight_concurrent_runs_from_two_copies_all_finish_and_lose_no_metric(team: Team) -> None:
    """8 concurrent runs from two machines: every parent and fold FINISHED, no lock error, no metric lost,
    the data version the same everywhere; the flow runs are in the team's Prefect API."""
    for name in [f"{m}-{lr}" for m, rates in RATES.items() for lr in rates]:
        result = team.results[name]
        assert result.returncode == 0, (name, result.stdout[-2000:], result.stderr[-2000:])
        assert "locked" not in result.stderr.lower() and "deadlock" not in result.stderr.lower(), result.stderr
    client = team.client()
    parents: list[Any] = team.results["before-cache"]  # type: ignore[assignment]  # the 8, before phase two
    assert len(parents) == 8, [p.info.run_id for p in parents]
    assert {p.data.params["train.lr"] for p in parents} == {lr for rates in RATES.values() for lr in rates}
    data = (team.copies["origin"] / "data" / "activity.csv").read_bytes()
    written = read = 0
    for parent in parents:
        assert parent.info.status == "FINISHED"
        assert parent.data.tags["scribbles.data_version"] == hashlib.md5(data).hexdigest()
        folds = _folds(client, parent)
        assert [f.info.status for f in folds] == ["FINISHED", "FINISHED"]
        w, r = metric_counts(client, parent)
        assert w == r > 0, (parent.info.run_id, w, r)
        written, read = written + w, read + r
    team.timings["metrics_written"], team.timings["metrics_read_back"] = written, read
    print(f"8 concurrent 2-fold runs on PostgreSQL servers: {team.timings['eight_runs_and_laptop_s']:.1f} s "
          f"(with a 9th on SQLite and `scribbles serve` beside them); metrics written {written}, read back {read}")
    flow_runs = _api(team.prefect, "/flow_runs/filter",
                     {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}})
    assert len([r for r in flow_runs if not r.get("deployment_id")]) >= 8


def test_a_scheduled_deployment_served_from_a_third_process_shows_its_runs(team: Team) -> None:
    """`scribbles serve` on a third process: its deployment's run COMPLETED in the server's API, in MLflow too."""
    assert team.timings["scheduled_run_s"] != float("inf"), team.results["serve"].stderr[-2000:]
    completed = team.scheduled
    assert completed and completed[0]["deployment_id"] and completed[0]["state"]["type"] == "COMPLETED"
    assert team.results["serve"].returncode == 0, team.results["serve"].stderr[-2000:]
    parents = _parents(team.client(), "team-scheduled")
    assert any(p.info.status == "FINISHED" for p in parents), [p.info.status for p in parents]


def test_fold_cache_hits_across_the_two_working_copies(team: Team) -> None:
    """Machine b runs what machine a ran: both folds come from a's fold runs (scribbles.cached_from)."""
    client = team.client()
    lr = RATES["a"][0]
    before: list[Any] = team.results["before-cache"]  # type: ignore[assignment]
    source = next(p for p in before if p.data.params["train.lr"] == lr)
    trained = {f.data.tags["scribbles.fold"]: f.info.run_id for f in _folds(client, source)}
    again = team.results["cache-b"]
    assert again.returncode == 0, again.stderr[-2000:]
    (newest,) = [p for p in _parents(client, "team") if p.info.run_id not in {b.info.run_id for b in before}]
    for fold in _folds(client, newest):
        assert fold.data.tags["scribbles.cached_from"] == trained[fold.data.tags["scribbles.fold"]]


def test_laptop_store_migrates_and_its_folds_and_rerun_work_on_the_server(team: Team) -> None:
    """`store migrate` copies the laptop's SQLite runs (nesting, params, metric history, tags, artifacts); an
    identical run on the server reuses the migrated folds, and a fresh clone without data reruns it from the
    DVC remote."""
    laptop = team.results["laptop"]
    assert laptop.returncode == 0, laptop.stderr[-2000:]
    source_uri = f"sqlite:///{team.copies['a'] / 'laptop.db'}"
    moved = team.results["migrate"]
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "migrated 3 run(s) of 1 experiment(s)" in moved.stdout, moved.stdout
    src, dst = MlflowClient(source_uri), team.client()
    (old,) = _parents(src, "laptop")
    (new,) = [p for p in _parents(dst, "laptop") if p.data.tags.get("scribbles.migrated_from")]
    assert new.data.tags["scribbles.migrated_from"] == old.info.run_id
    assert new.data.params == old.data.params and new.info.status == "FINISHED"
    assert {k: v for k, v in new.data.tags.items() if not k.startswith(("mlflow.", "scribbles.migrated", "scribbles."
                                                                          "logged_model"))} == \
        {k: v for k, v in old.data.tags.items() if not k.startswith(("mlflow.", "scribbles.logged_model"))}
    assert metric_counts(dst, new) == metric_counts(src, old)
    old_folds, new_folds = _folds(src, old), _folds(dst, new)
    assert [f.data.tags["scribbles.migrated_from"] for f in new_folds] == [f.info.run_id for f in old_folds]
    for old_fold, new_fold in zip(old_folds, new_folds, strict=True):
        history = [(m.step, m.value) for m in dst.get_metric_history(new_fold.info.run_id, "train_loss")]
        assert history == [(m.step, m.value) for m in src.get_metric_history(old_fold.info.run_id, "train_loss")]
        assert sorted(a.path for a in dst.list_artifacts(new_fold.info.run_id)) == \
            sorted(a.path for a in src.list_artifacts(old_fold.info.run_id))
    again = team.results["migrate-again"]
    assert "migrated 0 run(s)" in again.stdout and "3 run(s) already there, skipped" in again.stdout, again.stdout

    reused = team.results["reuse-migrated-b"]
    assert reused.returncode == 0, reused.stderr[-2000:]
    reused_parent = next(p for p in _parents(dst, "laptop") if p.data.tags.get("scribbles.rerun_of") is None
                         and p.info.run_id != new.info.run_id)
    assert [f.data.tags.get("scribbles.cached_from") for f in _folds(dst, reused_parent)] == \
        [f.info.run_id for f in new_folds]

    rerun = team.results["rerun-c"]  # machine c has no data/: DVC read it from the remote
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    rerun_parent = next(p for p in _parents(dst, "laptop") if p.data.tags.get("scribbles.rerun_of"))
    assert rerun_parent.data.tags["scribbles.rerun_of"] == new.info.run_id
    assert rerun_parent.data.tags["scribbles.data_version"] == new.data.tags["scribbles.data_version"]
    assert rerun_parent.info.status == "FINISHED"
