"""Optuna search (sweep.optuna): study beside the MLflow store, pruning across folds and epochs, early
stopping, resume of a killed sweep. Real Prefect, real SQLite MLflow store, real Optuna journal, real
DVC project, real gloo processes for the 2-worker check.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from helpers import SCRIBBLES, make_dvc_project, run_cli, work_in
from mlflow.tracking import MlflowClient

#: Two folds of a small MLP, few epochs: seconds per trial.
CONFIG: dict[str, Any] = {
    "experiment": "search",
    "data": {"name": "dvc", "path": "data/activity.csv", "target": "activity", "group": "subject",
             "time": "timestamp"},
    "split": {"name": "group_kfold", "n_splits": 2},
    "model": {"name": "mlp", "hidden": [16]},
    "train": {"epochs": 3, "batch_size": 64, "lr": 0.003},
}


@pytest.fixture
def project(tmp_path: Path, activity_small, monkeypatch: pytest.MonkeyPatch, prefect_api: str) -> Path:
    root = make_dvc_project(tmp_path / "proj", {"activity.csv": activity_small})
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    monkeypatch.delenv("SCRIBBLES_STUDY_STORAGE", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)  # pytest-xdist's workers export COLUMNS=80; a shell does not
    return work_in(root, monkeypatch)


def store(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def children(client: MlflowClient, parent: str) -> list[Any]:
    runs = client.search_runs([client.get_run(parent).info.experiment_id],
                              f"tags.\"mlflow.parentRunId\" = '{parent}'", max_results=1000)
    return sorted(runs, key=lambda r: (int(r.data.tags.get("scribbles.fold", -1)), r.info.start_time))


def sweep_run(client: MlflowClient, name: str = "search") -> Any:
    exp = client.get_experiment_by_name(name)
    tops = [r for r in client.search_runs([exp.experiment_id], max_results=1000)
            if "mlflow.parentRunId" not in r.data.tags]
    assert len(tops) == 1
    return tops[0]


def write(project: Path, **changes: Any) -> None:
    config = json.loads(json.dumps(CONFIG))
    for key, value in changes.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    (project / "exp.yaml").write_text(yaml.safe_dump(config))


def study_of(project: Path, run: Any) -> optuna.Study:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = project / "optuna-journal.log"  # beside mlflow.db
    assert journal.exists()
    return optuna.load_study(study_name=run.data.tags["scribbles.study"],
                             storage=JournalStorage(JournalFileBackend(str(journal))))


def test_optuna_sweep_prunes_a_bad_trial_and_keeps_its_finished_folds(project: Path) -> None:
    """Grid sampler over lr with the median pruner: the hopeless lr is pruned after its first epochs,
    its trial run ends KILLED with scribbles.pruned, and the study sits in a journal beside mlflow.db."""
    sweep = {"optuna": {"sampler": "grid", "seed": 1, "pruner": "median", "startup_trials": 1},
             "space": {"train.lr": [0.01, 1.0e-7]}}
    write(project, sweep=sweep, train={"epochs": 4, "early_stopping": {"patience": 1, "restore_best": True}})
    done = run_cli("run", "exp.yaml", cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    client = store(project)
    top = sweep_run(client)
    assert top.data.tags["scribbles.sweep"] == "optuna" and top.info.status == "FINISHED"
    study = study_of(project, top)
    states = {t.params["train.lr"]: t.state for t in study.trials}
    assert states == {0.01: optuna.trial.TrialState.COMPLETE, 1.0e-7: optuna.trial.TrialState.PRUNED}, states
    trials = {r.data.params["train.lr"]: r for r in children(client, top.info.run_id)}
    assert set(trials) == {"0.01", "1e-07"}
    good, bad = trials["0.01"], trials["1e-07"]
    assert good.info.status == "FINISHED" and len(children(client, good.info.run_id)) == 2
    for fold in children(client, good.info.run_id):  # train.early_stopping: where each fold stopped
        epochs = client.get_metric_history(fold.info.run_id, "valid_loss")
        assert fold.data.metrics["stopped_epoch"] == len(epochs) - 1
        losses = [m.value for m in sorted(epochs, key=lambda m: m.step)]
        assert fold.data.metrics["best_epoch"] == losses.index(min(losses))
    assert bad.info.status == "KILLED" and bad.data.tags["scribbles.pruned"].startswith("step ")
    assert "median pruner" in bad.data.tags["scribbles.pruned"]
    folds = children(client, bad.info.run_id)
    assert all(f.info.status in ("FINISHED", "KILLED") for f in folds)
    assert "pruned at step" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr  # a pruned fold is no failed task run
    assert "sweep of 2 trials" in done.stderr, done.stderr  # the grid's size (no sweep.optuna.trials)
    assert all(line.strip() for line in done.stderr.splitlines()), repr(done.stderr)  # none after a trial's line
    # Piped stdout: the table is not cut to 80 columns (full cells, no '…'); no TTA, so no TTA column.
    assert "…" not in done.stdout and "(TTA)" not in done.stdout, done.stdout
    mean, std = good.data.metrics["accuracy_mean"], good.data.metrics["accuracy_std"]
    assert f"{mean:.4f} ± {std:.4f}" in done.stdout and good.info.run_id[:8] in done.stdout, done.stdout
    assert "best trial (corrected paired t-test on the same folds, one-sided" in done.stdout  # not wrapped
    # Ranked by what it finished: the complete trial first; the study's value is its mean over folds.
    ranking = json.loads(Path(client.download_artifacts(top.info.run_id, "trials.json", str(project))).read_text())
    assert ranking[0]["run_id"] == good.info.run_id and ranking[-1].get("pruned")
    assert study.best_value == pytest.approx(good.data.metrics["accuracy_mean"])
    assert study.best_trial.user_attrs["scribbles.mlflow_run_id"] == good.info.run_id


def test_bad_optuna_sweeps_exit_2_naming_the_field(project: Path) -> None:
    cases = {
        "sweep: {optuna: {sampler: tpe}, space: {train.lr: [0.1]}}": "sweep.optuna.trials",
        "sweep: {optuna: {sampler: grid}, space: {train.lr: {low: 0.001, high: 0.1}}}": "sweep.space.train.lr",
        "sweep: {optuna: {trials: 2, pruner: sometimes}, space: {train.lr: [0.1]}}": "sweep.optuna.pruner",
        "train: {early_stopping: {patience: 0}}": "train.early_stopping.patience",
        # Study storages and the ranking metric are checked before Prefect starts or any run is created.
        "sweep: {optuna: {trials: 1, storage: /proc/nope/j.log}, space: {train.lr: [0.1]}}": "sweep.optuna.storage",
        "sweep: {optuna: {trials: 1, storage: 'foo://bar'}, space: {train.lr: [0.1]}}": "sweep.optuna.storage",
        "sweep: {optuna: {trials: 1}, space: {train.lr: [0.1]}, rank_by: bogus}": "sweep.rank_by",
        "sweep: {optuna: {trials: 2}, space: {train.lr: {low: 0.1, high: 0.01}}}": "sweep.space.train.lr: high",
    }
    for text, field in cases.items():
        (project / "bad.yaml").write_text(yaml.safe_dump({k: v for k, v in CONFIG.items() if k != "train"})
                                          + text + "\n")
        done = run_cli("run", "bad.yaml", cwd=project)
        assert done.returncode == 2, (text, done.stdout, done.stderr)
        lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and field in lines[0] and "Traceback" not in done.stderr, (text, done.stderr)
        assert lines[0].count(field.split(":")[0] + ":") == 1, lines[0]  # the field is named once
        assert "scribbles running" not in done.stdout, (text, done.stdout)
    assert not (project / "mlflow.db").exists() and not (project / "optuna-journal.log").exists()
    assert not (project / ".scribbles").exists() and not (project / "mlruns").exists()


def test_killed_sweep_resumes_the_study_without_losing_or_repeating_a_trial(project: Path) -> None:
    """SIGKILL while trial 1 trains its second fold; `scribbles resume SWEEP_RUN_ID` continues trial 1
    as the same Optuna trial in the same MLflow run (fold 0 kept), then runs trial 2; ranking covers all."""
    sweep = {"optuna": {"sampler": "random", "trials": 3, "seed": 0},
             "space": {"train.lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True}, "model.hidden": [[8], [16]]}}
    # Epochs enough that trial 1's second fold still trains when the poll below sees its first one finished
    # (with 20, runs got fast enough for the whole trial to finish first).
    write(project, sweep=sweep, train={"epochs": 60})
    client = store(project)
    process = subprocess.Popen([SCRIBBLES, "run", "exp.yaml"], cwd=project, env=dict(os.environ),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, kept = time.monotonic() + 240, None
        while kept is None and time.monotonic() < deadline:
            assert process.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.2)
            if (project / "mlflow.db").exists() and (exp := client.get_experiment_by_name("search")):
                trial = [r for r in client.search_runs([exp.experiment_id], "tags.\"scribbles.optuna_trial\" = '1'")
                         if "scribbles.fold" not in r.data.tags]
                if trial:
                    done = client.search_runs([exp.experiment_id], f"tags.\"mlflow.parentRunId\" = "
                                              f"'{trial[0].info.run_id}' and attributes.status = 'FINISHED'")
                    kept = done[0] if done else None
        assert kept is not None, "trial 1 never finished a fold"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    top = sweep_run(client)
    assert top.info.status == "RUNNING"  # SIGKILL cannot be caught
    assert [t.state for t in study_of(project, top).trials][:2] == [optuna.trial.TrialState.COMPLETE,
                                                                     optuna.trial.TrialState.RUNNING]

    resumed = run_cli("resume", top.info.run_id, cwd=project)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # Trial 1's second fold trains again: the steps the study holds are not reported twice (Optuna warns).
    assert "UserWarning" not in resumed.stderr and "already reported" not in resumed.stderr, resumed.stderr
    assert "sweep of 3 trials" in resumed.stderr, resumed.stderr
    top = client.get_run(top.info.run_id)
    assert top.info.status == "FINISHED" and top.data.tags["scribbles.resumed"] == "true"
    study = study_of(project, top)
    # The resumed sampler (seeded again) first draws the points trials 0 and 1 had: told as repeats, not
    # trained again (before, trial 2 trained trial 0's parameters a second time); then one new point.
    trained = [t for t in study.trials if "scribbles.repeat_of" not in t.user_attrs]
    numbers = [t.number for t in trained]
    assert numbers[:2] == [0, 1] and len(numbers) == 3, numbers
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trained)
    assert len({json.dumps(t.params, sort_keys=True) for t in trained}) == 3
    for repeat in (t for t in study.trials if "scribbles.repeat_of" in t.user_attrs):
        assert repeat.params == study.trials[repeat.user_attrs["scribbles.repeat_of"]].params
    trials = children(client, top.info.run_id)
    assert sorted(int(r.data.tags["scribbles.optuna_trial"]) for r in trials) == numbers  # none twice
    assert all(r.info.status == "FINISHED" for r in trials)
    one = next(r for r in trials if r.data.tags["scribbles.optuna_trial"] == "1")
    assert study.trials[1].user_attrs["scribbles.mlflow_run_id"] == one.info.run_id
    folds = [f for f in children(client, one.info.run_id) if f.info.status == "FINISHED"]
    assert sorted(f.data.tags["scribbles.fold"] for f in folds) == ["0", "1"]
    assert kept.info.run_id in {f.info.run_id for f in folds}  # the fold finished before the kill is kept
    ranking = json.loads(Path(client.download_artifacts(top.info.run_id, "trials.json", str(project))).read_text())
    assert sorted(t["trial"] for t in ranking) == numbers
    # The table (two paths, lr floats: wider than 80 columns) is printed whole to the pipe, without TTA.
    assert "…" not in resumed.stdout and "(TTA)" not in resumed.stdout, resumed.stdout
    for run in trials:
        cell = f"{run.data.metrics['accuracy_mean']:.4f} ± {run.data.metrics['accuracy_std']:.4f}"
        assert cell in resumed.stdout and run.info.run_id[:8] in resumed.stdout, resumed.stdout
        assert run.data.params["train.lr"] in resumed.stdout, resumed.stdout


def test_parallel_trials_equal_a_sequential_grid(project: Path) -> None:
    """sweep.parallel: 2 runs two trials at once in a process pool; a grid sweep gives the same trials
    with the same fold scores as one trial after another."""
    from scribbles.flows.experiment import experiment

    base = json.loads(json.dumps(CONFIG))
    base["train"]["epochs"] = 1
    space = {"train.lr": [0.01, 0.001]}

    def scores(result: dict[str, Any]) -> dict[str, list[float]]:
        return {str(t["assignment"]["train.lr"]): [f["accuracy"] for f in t["folds"]] for t in result["trials"]}

    one = experiment({**base, "experiment": "one", "sweep": {"optuna": {"sampler": "grid"}, "space": space}})
    two = experiment({**base, "experiment": "two",
                      "sweep": {"optuna": {"sampler": "grid"}, "space": space, "parallel": 2}}, force=True)
    assert scores(two) == scores(one) and len(scores(one)) == 2
    client = store(project)
    top = sweep_run(client, "two")
    trials = children(client, top.info.run_id)
    assert len(trials) == 2 and all(len(children(client, t.info.run_id)) == 2 for t in trials)
    assert {r.info.status for r in trials} == {"FINISHED"}
    # Both trials ran at once: each started before the other ended.
    a, b = trials
    assert a.info.start_time < b.info.end_time and b.info.start_time < a.info.end_time


@pytest.mark.parametrize("sampler", ["tpe", "random", "grid", "cmaes"])
def test_every_sampler_and_pruner_asks_reports_and_prunes(sampler: str, tmp_path: Path) -> None:
    """Each sampler draws from the space (a non-plain choice decoded back), each pruner takes the reporter's
    steps; the journal storage beside a SQLite store reopens with the same trials."""
    from scribbles.core.config import OptunaConfig, RandomRange
    from scribbles.flows.pruning import Pruned, Reporter
    from scribbles.flows.search import Space, open_storage, pruner_for, sampler_for, storage_url

    space = Space({"model.hidden": [[8], [16, 16]], "train.lr": [0.01, 0.1]} if sampler == "grid" else
                  {"model.hidden": [[8], [16, 16]], "train.lr": RandomRange(low=1e-4, high=1e-1, log=True),
                   "train.epochs": RandomRange(low=1, high=3, integer=True)})
    journal = storage_url(OptunaConfig(), f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert journal == str(tmp_path / "optuna-journal.log")
    for pruner in ("median", "hyperband", "wilcoxon", "none"):
        settings = OptunaConfig(sampler=sampler, pruner=pruner, trials=4, startup_trials=1)
        study = optuna.create_study(storage=open_storage(journal) if pruner == "median" else None,
                                    sampler=sampler_for(settings, space), pruner=pruner_for(settings, 4),
                                    study_name=f"{sampler}-{pruner}", direction="maximize")
        outcomes = []
        for number in range(4):
            trial = study.ask(space.distributions)
            assignment = space.assignment(trial.params)
            assert assignment["model.hidden"] in ([8], [16, 16])
            reporter = Reporter(trial, pruner, 2, "accuracy", True)
            try:
                for fold in range(2):  # a later trial is always worse: the pruners may stop it
                    for epoch in range(2):
                        reporter.epoch(fold, epoch, {"valid_loss": 1.0 + number})
                    reporter.fold(fold, {"accuracy": 1.0 - number / 10})
                study.tell(trial, 1.0 - number / 10)
                outcomes.append("complete")
            except Pruned as stop:
                assert stop.step >= 0 and pruner in stop.reason
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                outcomes.append("pruned")
        assert outcomes[0] == "complete"
        if pruner == "median":
            assert outcomes[1:] == ["pruned"] * 3
        if pruner == "none":
            assert outcomes == ["complete"] * 4
    reopened = optuna.load_study(study_name=f"{sampler}-median", storage=open_storage(journal))
    assert len(reopened.trials) == 4


def test_a_point_drawn_again_is_not_a_trial_and_a_used_up_space_ends_the_search() -> None:
    """TPE on a small categorical space draws points again: ``ask_untried`` tells each repeat the outcome of
    the trial it repeats, never hands it out, and hands out nothing once every point was tried."""
    from scribbles.flows.repeats import REPEAT_OF, ask_untried, is_repeat, space_size
    from scribbles.flows.search import Space

    space = Space({"train.lr": [0.1, 0.01], "model.hidden": [[8], [16]]})
    assert space_size(space.distributions) == 4
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=1), direction="maximize")
    handed, drawn_again = [], 0
    while True:
        batch, repeats = ask_untried(study, space.distributions, 1)
        drawn_again += repeats
        if not batch:
            break
        (trial,) = batch
        handed.append(json.dumps(trial.params, sort_keys=True))
        value = 1.0 if trial.params["train.lr"] == 0.1 else 0.5  # TPE then favours lr 0.1
        trial.report(value / 2, 0)  # each fold's score, as the sweep reports them to the pruner
        study.tell(trial, value)
    assert sorted(handed) == sorted(set(handed)) and len(handed) == 4  # each point once, then none
    repeats = [t for t in study.trials if is_repeat(t)]
    assert len(repeats) == drawn_again > 0, "TPE drew no point twice: the case is not exercised"
    first = {json.dumps(t.params, sort_keys=True): t.number for t in study.trials if not is_repeat(t)}
    for trial in repeats:
        earlier = study.trials[first[json.dumps(trial.params, sort_keys=True)]]
        assert trial.user_attrs[REPEAT_OF] == earlier.number
        assert trial.state == earlier.state and trial.value == earlier.value
        # A pruner counts the repeat as finished: it sees its curve too, the curve of the trial it repeats.
        assert trial.intermediate_values == earlier.intermediate_values == {0: earlier.value / 2}


def test_a_sweep_asking_more_trials_than_its_space_holds_trains_each_point_once(project: Path) -> None:
    """`sweep.optuna.trials: 4` over a space of 2 points: 2 trial runs, each point once, and the output
    says why the sweep trained fewer trials than asked."""
    sweep = {"optuna": {"sampler": "tpe", "seed": 0, "trials": 4, "pruner": "none", "startup_trials": 1},
             "space": {"train.lr": [0.01, 0.003]}}
    write(project, sweep=sweep, train={"epochs": 1})
    done = run_cli("run", "exp.yaml", cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    client = store(project)
    top = sweep_run(client)
    trials = children(client, top.info.run_id)
    assert sorted(r.data.params["train.lr"] for r in trials) == ["0.003", "0.01"]
    assert all(r.info.status == "FINISHED" for r in trials)
    assert "2 of 4 trials trained: sweep.space holds 2 points and each was tried" in done.stdout, done.stdout


def test_a_trial_pruned_on_reused_folds_ends_pruned_not_failed(project: Path) -> None:
    """A trial whose folds come from the fold cache reports their scores to the pruner too; when it prunes
    there, the trial ends KILLED and pruned (it ended FAILED with "Pruned: ...", and TPE drew it again)."""
    sweep = {"optuna": {"sampler": "grid", "seed": 1, "pruner": "median", "startup_trials": 1},
             "space": {"train.lr": [1.0e-7]}}
    write(project, sweep=sweep, train={"epochs": 2})
    first = run_cli("run", "exp.yaml", cwd=project)  # trains lr 1e-7 alone: its folds are cached
    assert first.returncode == 0, first.stdout + first.stderr
    sweep["space"] = {"train.lr": [0.01, 1.0e-7]}
    write(project, sweep=sweep, train={"epochs": 2}, experiment="search")
    second = run_cli("run", "exp.yaml", cwd=project)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "failed" not in second.stdout, second.stdout
    client = store(project)
    exp = client.get_experiment_by_name("search")
    tops = sorted((r for r in client.search_runs([exp.experiment_id], max_results=1000)
                   if "mlflow.parentRunId" not in r.data.tags), key=lambda r: r.info.start_time)
    trials = {r.data.params["train.lr"]: r for r in children(client, tops[-1].info.run_id)}
    bad = trials["1e-07"]
    assert bad.info.status == "KILLED" and bad.data.tags["scribbles.pruned"].startswith("step "), bad.data.tags
    study = study_of(project, tops[-1])
    assert {t.params["train.lr"]: t.state for t in study.trials}[1.0e-7] == optuna.trial.TrialState.PRUNED
