"""Optuna as the sweep's search engine: ``sweep: {optuna: {...}, space: {...}}``.

The study (``optuna.create_study``) lives in a storage beside the MLflow store: ``sweep.optuna.storage``
when given, else ``$SCRIBBLES_STUDY_STORAGE`` (the team's database), else an Optuna journal file
(``optuna.storages.JournalStorage`` over ``JournalFileBackend``) next to a SQLite or file MLflow store,
or under the project's ``.scribbles/`` for a tracking server. The study is named after the sweep run
(``scribbles-<sweep run id>``, tag ``scribbles.study`` on the sweep run), so ``optuna-dashboard
<storage>`` shows the trials by the names MLflow knows them by.

Each trial is asked from the study (``study.ask`` with the space's distributions), run as a nested run
of the sweep run with its folds nested under it (``runs.run_one``), reported to the study epoch by
epoch or fold by fold (flows/pruning.py) and told its state: COMPLETE with the mean of ``rank_by`` over
its folds, PRUNED, or FAIL. The trial's result (summary, folds, run id) is kept as the Optuna trial's
user attribute ``scribbles.result``, so the final ranking covers every trial of the study, those run
before a kill included. ``scribbles resume SWEEP_RUN_ID`` reopens the sweep run and the study: a trial
left RUNNING by the kill is continued as the same Optuna trial in its own MLflow run (its finished folds
kept), then new trials are asked until the budget is met.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scribbles.core import RunContext
from scribbles.core.config import ExperimentConfig, OptunaConfig, RandomRange
from scribbles.core.errors import ScribblesError
from scribbles.core.redact import mask_text
from scribbles.core.run_store import STORE_RUN_ID
from scribbles.core.sweep import check_search, grid_size, label, representatives, trial_config

from . import fold_task
from .lifecycle import run_lifecycle
from .paired import mark_not_worse
from .prefect_env import configure_prefect
from .pruning import MLFLOW_RUN, Reporter
from .repeats import ask_untried, is_repeat, space_size
from .study_storage import STUDY_ENV
from .sweep_run import rank_metric, sweep_context, sweep_result

configure_prefect()

from prefect import task  # noqa: E402  (configure_prefect must run first)
from prefect.cache_policies import NO_CACHE  # noqa: E402

#: The default journal file's name, beside the MLflow store (``optuna-dashboard`` opens it).
JOURNAL = "optuna-journal.log"
#: The Optuna user attribute that keeps a finished trial's result for the ranking.
RESULT = "scribbles.result"


def storage_url(optuna_config: OptunaConfig, tracking_uri: str | None, root: Path | None = None) -> str:
    """The study's storage: the config's, else ``$SCRIBBLES_STUDY_STORAGE``, else a journal file beside
    the MLflow store (a ``sqlite:///`` or file store's folder; ``.scribbles/`` for a server)."""
    if optuna_config.storage:
        return optuna_config.storage
    if os.environ.get(STUDY_ENV):
        return os.environ[STUDY_ENV]
    root = root or Path.cwd()
    uri = tracking_uri or ""
    if uri.startswith("sqlite:///"):
        return str(Path(uri.removeprefix("sqlite:///")).resolve().parent / JOURNAL)
    if uri.startswith("file:"):
        return str(Path(uri.removeprefix("file://").removeprefix("file:")).resolve().parent / JOURNAL)
    if uri and "://" not in uri:  # a plain folder is a file store
        return str(Path(uri).resolve().parent / JOURNAL)
    return str(root / ".scribbles" / JOURNAL)


def open_storage(url: str) -> Any:
    """An Optuna storage for ``url``: a database URL (``postgresql://``, ``sqlite:///``, ...) or a journal
    file path (``journal:PATH`` or any path without a scheme)."""
    import optuna

    if "://" in url and not url.startswith("file:"):
        return url  # optuna.create_study builds an RDBStorage from the URL
    path = Path(url.removeprefix("journal:").removeprefix("file://").removeprefix("file:"))
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


class Space:
    """``sweep.space`` as Optuna distributions; choices that are not plain values (``[64, 64]``) go to
    Optuna as their JSON text and come back decoded."""

    def __init__(self, space: dict[str, list[Any] | RandomRange]) -> None:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        self.distributions: dict[str, Any] = {}
        self.decode: dict[str, dict[Any, Any]] = {}
        for path, spec in space.items():
            if isinstance(spec, list):
                encoded = [_encode(value) for value in spec]
                self.decode[path] = dict(zip(encoded, spec, strict=True))
                self.distributions[path] = CategoricalDistribution(encoded)
            elif spec.integer:
                self.distributions[path] = IntDistribution(int(spec.low), int(spec.high), log=spec.log)
            else:
                self.distributions[path] = FloatDistribution(spec.low, spec.high, log=spec.log)

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's search space (every path is a list of choices)."""
        return {path: list(dist.choices) for path, dist in self.distributions.items()}

    def assignment(self, params: dict[str, Any]) -> dict[str, Any]:
        """A trial's dotted path -> config value."""
        return {path: self.decode[path][params[path]] if path in self.decode else params[path]
                for path in self.distributions}


def _encode(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else json.dumps(value)


def sampler_for(config: OptunaConfig, space: Space) -> Any:
    """The Optuna sampler named by ``sweep.optuna.sampler``, seeded by ``sweep.optuna.seed``."""
    import optuna

    if config.sampler == "grid":
        return _Grid(space.grid(), seed=config.seed)
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=config.seed)
    if config.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=config.seed, warn_independent_sampling=False)
    return optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=max(config.startup_trials, 1))


def _grid_class() -> type:
    import optuna

    class Grid(optuna.samplers.GridSampler):
        """Optuna's grid sampler without its ``study.stop()`` once the grid is covered: that call works only
        inside ``study.optimize``, and the sweep's own loop stops at the budget (the grid's size)."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return Grid


def _Grid(search_space: dict[str, list[Any]], seed: int) -> Any:
    return _grid_class()(search_space, seed=seed)


def pruner_for(config: OptunaConfig, steps: int) -> Any:
    """The Optuna pruner named by ``sweep.optuna.pruner``; ``steps`` is folds x epochs (Hyperband's budget)."""
    import optuna

    if config.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=config.startup_trials, n_warmup_steps=config.warmup_steps)
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(steps, 1))
    if config.pruner == "wilcoxon":
        return optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=2)
    return optuna.pruners.NopPruner()


def _max_epochs(space: dict[str, Any], epochs: int) -> int:
    """The most epochs a trial trains: ``train.epochs`` unless the space varies it."""
    spec = space.get("train.epochs")
    if spec is None:
        return epochs
    return int(max(spec) if isinstance(spec, list) else spec.high)


def _jsonable(result: dict[str, Any]) -> dict[str, Any]:
    keep = ("trial", "assignment", "summary", "links", "folds", "fold_rows", "split_fingerprint", "transforms",
            "failed", "pruned")
    return json.loads(json.dumps({k: result[k] for k in keep if k in result}, default=str))


@dataclass(frozen=True)
class TrialJob:
    """What one trial needs, all of it plain values (it may run in another process)."""

    config: dict[str, Any]
    assignment: dict[str, Any]
    allow_dirty: bool
    tags: dict[str, str]
    force: bool
    #: The MLflow run of a trial a kill cut short, continued in place ("" for a new trial).
    continues: str
    sweep: RunContext
    plots: str
    storage: str
    study_name: str
    settings: dict[str, Any]
    steps: int
    trial_id: int
    number: int
    epochs: int
    rank_by: str
    greater: bool
    root: str


def execute(job: TrialJob, study: Any = None) -> dict[str, Any]:
    """Run one trial (its folds, reported to the study) in this process; its result, never TrialFailed."""
    import optuna

    from .runs import TrialFailed, run_one

    with fold_task.project_root(job.root):
        if study is None:  # another process: the study from its storage, with the sweep's pruner
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            settings = OptunaConfig(**job.settings)
            study = optuna.load_study(study_name=job.study_name, storage=open_storage(job.storage),
                                      pruner=pruner_for(settings, job.steps))
        trial = optuna.trial.Trial(study, job.trial_id)
        reporter = Reporter(trial, OptunaConfig(**job.settings).pruner, job.epochs, job.rank_by, job.greater)
        try:
            result = run_one(job.config, job.allow_dirty, job.tags, job.force,
                             {STORE_RUN_ID: job.continues} if job.continues else None, parent=job.sweep,
                             run_name=f"trial {job.number}: {label(job.assignment)}", plots=Path(job.plots),
                             reporter=reporter)
        except TrialFailed as failed:  # it fails alone: the other trials still run
            result = {"summary": {}, "links": failed.links, "failed": failed.reason}
    return {"trial": job.number, "assignment": job.assignment, **result}


@task(name="run-trial", cache_policy=NO_CACHE)
def run_trial(job: TrialJob) -> dict[str, Any]:
    """One Optuna trial in a task runner's process (``sweep.parallel``); see ``execute``."""
    return execute(job)


def trial_runner(plan: Any, parallel: int) -> Any:
    """The task runner for ``sweep.parallel`` trials at once (a Dask cluster with ``train.dask_address``,
    else a process pool), or None to run trials one by one in this process."""
    if parallel <= 1:
        return None
    if plan.config.train.dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=plan.config.train.dask_address)
    from prefect.task_runners import ProcessPoolTaskRunner

    return ProcessPoolTaskRunner(max_workers=parallel)


def run_search(parsed: ExperimentConfig, allow_dirty: bool, tags: dict[str, str] | None, force: bool,
               resume: str | None = None) -> dict[str, Any]:
    """An Optuna sweep: one sweep run, a nested run per trial, folds nested under each; trials ranked.

    ``resume`` is the MLflow run id of a stopped Optuna sweep to continue (``scribbles resume``).
    Raises ConfigError for a bad ``sweep`` section, before any run is created.
    """
    import optuna

    from .runs import load_data, make_folds, rank
    from .stores import store_of

    sweep_config = parsed.sweep
    assert sweep_config is not None and sweep_config.optuna is not None
    check_search(sweep_config)
    settings = sweep_config.optuna
    checked = representatives(parsed)  # every path and choice validated before any work
    first, registry = fold_task.plan_for(checked[0][1].model_dump(mode="json"), allow_dirty)
    for _, trial in checked[1:]:
        fold_task.plan_for(trial.model_dump(mode="json"), allow_dirty)
    rank_by, greater = rank_metric(first, sweep_config)
    space = Space(sweep_config.space or {})
    budget = settings.trials or grid_size(sweep_config)
    base = checked[0][1].model_dump(mode="json")
    load_data(base, allow_dirty)
    make_folds(base, allow_dirty)
    dataset = fold_task.dataset_for(first)
    n_folds = len(fold_task.folds_for(first))
    store = store_of(first)
    storage = storage_url(settings, store.uri if store is not None else None)
    with tempfile.TemporaryDirectory(prefix="scribbles-sweep-") as tmp:
        record = {"sweep": "optuna", "sampler": settings.sampler, "pruner": settings.pruner, "trials": str(budget),
                  "study_storage": mask_text(storage)}
        sweep = sweep_context(parsed, first, dataset, Path(tmp), f"optuna sweep of {budget} trials", record, tags)
        if resume:
            sweep.continues = {STORE_RUN_ID: resume}
        with run_lifecycle(registry, sweep, first.trackers, hold=False) as ending:
            run_id = sweep.links.get(STORE_RUN_ID) or uuid.uuid4().hex
            study_name = f"scribbles-{run_id}"
            if store is not None and sweep.links.get(STORE_RUN_ID):
                store.set_record(run_id, {"study": study_name})
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.create_study(
                storage=open_storage(storage), sampler=sampler_for(settings, space),
                pruner=pruner_for(settings, n_folds * _max_epochs(sweep_config.space or {},
                                                                   first.config.train.epochs)),
                study_name=study_name,
                direction="maximize" if greater else "minimize", load_if_exists=True,
            )
            study.set_user_attr("scribbles.sweep_run_id", run_id)
            study.set_user_attr("scribbles.rank_by", rank_by)

            # A step means the same in every trial: fold * the largest epochs any trial trains + epoch.
            epochs = _max_epochs(sweep_config.space or {}, first.config.train.epochs)
            steps = n_folds * epochs

            def job(trial: Any, continues: str | None) -> TrialJob:
                assignment = space.assignment(trial.params)
                return TrialJob(
                    trial_config(parsed, assignment).model_dump(mode="json"), assignment, allow_dirty,
                    {**(tags or {}), "optuna_trial": str(trial.number)}, force, continues or "",
                    sweep, str(tmp), storage, study_name, settings.model_dump(mode="json"), steps,
                    trial._trial_id, trial.number, epochs, rank_by, greater, str(Path.cwd()))

            def conclude(trial: Any, result: dict[str, Any]) -> None:
                trial.set_user_attr(RESULT, _jsonable(result))
                value = result["summary"].get(f"{rank_by}_mean")
                if "pruned" in result:
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                elif "failed" in result or value is None or not math.isfinite(value):
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, value)

            # A trial the kill left RUNNING continues as the same Optuna trial, in its own MLflow run.
            for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                trial = optuna.trial.Trial(study, stale._trial_id)
                if set(stale.params) != set(space.distributions):  # asked but never started: fill it
                    for path, dist in space.distributions.items():
                        if path not in stale.params:
                            trial._suggest(path, dist)
                conclude(trial, execute(job(trial, stale.user_attrs.get(MLFLOW_RUN)), study))
            done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
            runner = trial_runner(first, sweep_config.parallel)
            with runner or contextlib.nullcontext():
                while (left := budget - sum(not is_repeat(t) for t in study.get_trials(deepcopy=False,
                                                                                         states=done))) > 0:
                    # Asked here, in order, so that grid and random samplers give a sequential sweep's
                    # trials; with sweep.parallel N, N trials run at once in their own processes. A point
                    # drawn again is not trained again (flows/repeats.py).
                    batch, _ = ask_untried(study, space.distributions, min(sweep_config.parallel, left))
                    if not batch:
                        break  # every point of the space was tried (or only repeats were drawn)
                    if runner is None:
                        for trial in batch:
                            conclude(trial, execute(job(trial, None), study))
                        continue
                    futures = [(trial, runner.submit(run_trial, {"job": job(trial, None)})) for trial in batch]
                    for trial, future in futures:
                        conclude(trial, future.result())
            results = [dict(t.user_attrs[RESULT]) for t in study.get_trials(deepcopy=False, states=done)
                       if RESULT in t.user_attrs]
            if results and all("failed" in r for r in results):
                raise ScribblesError(f"every trial of the sweep failed; trial 0: {results[0]['failed']}")
            ranked = mark_not_worse(rank(results, rank_by, greater), rank_by, greater)
            ending.end(ranked[0]["summary"], ranked)
    return sweep_result(first, sweep, rank_by, ranked,
                        study={"name": study_name, "storage": mask_text(storage),
                               "repeats": sum(is_repeat(t) for t in study.get_trials(deepcopy=False)),
                               "trials": budget, "points": space_size(space.distributions)})

