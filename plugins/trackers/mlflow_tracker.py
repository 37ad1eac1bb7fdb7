"""The ``mlflow`` tracker: a parent run per experiment run and a nested run per fold.

Layout (DESIGN.md "MLflow layout"): params are the resolved config, flattened; fold runs get per-epoch
``train_loss``/``valid_loss`` and final ``{metric}``/``{metric}_tta``; the parent gets the fold means
and standard deviations, lineage tags, the dataset as an input, and the artifacts (resolved config,
fold report, learning curves, confusion matrix); each fold run keeps its trained model.

Only the parent run is created on the caller's thread (a store that cannot be reached fails the run
before any training); every other call runs in order on a logging thread, so training never waits
for the store. mlflow is imported inside the methods: the registry loads where only torch is installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict
from scribbles.core import (
    EpochContext,
    FoldContext,
    FoldEndContext,
    RunContext,
    RunEndContext,
    RunErrorContext,
    Tracker,
    hookimpl,
    stops_deferred,
)
from scribbles.core.redact import mask_text
from scribbles.core.run_store import STORE_RUN_ID

from .names import (
    ARTIFACT_HASH_TAG,
    COMMIT_TAG,
    CONFIG_FILE,
    CONFUSION_FILE,
    FOLD_REPORT_FILE,
    MODEL_FOLDER,
    NOTE_TAG,
    PARENT_TAG,
    RESULT_FILE,
    SCORES_FILE,
    SOURCE_TAG,
    TRIALS_FILE,
    tag,
    tags_of,
)
from .plots import confusion_counts, plot_confusion, plot_learning_curves, plot_residuals
from .store import tracking_uri
from .worker import LogWorker

# MLflow 3 sends usage telemetry from background threads that retry while there is no network; they
# took CPU from training (and nothing leaves this machine without being asked). A user's setting wins.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

MAX_PARAM_LENGTH = 6000
#: MLflow takes at most 100 params per ``log_batch``.
PARAMS_PER_BATCH = 100
#: Per-epoch metrics are sent at most this often (seconds) during a fold, and at its end.
FLUSH_S = 10.0
#: How long a stopped run waits for queued logging before it writes the final statuses.
ERROR_DRAIN_S = 20.0


#: The experiment tag MLflow 3's UI reads to choose its view; without it an experiment opens in the GenAI
#: view, where fold runs are hidden until the user switches. "custom_model_development" is "model training".
KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"


def is_global_zero() -> bool:
    """True unless torch.distributed's launcher says this process is not rank 0."""
    return os.environ.get("RANK", "0") == "0"


def experiment_id(client: Any, name: str) -> str:
    """The id of experiment ``name``, created when missing (a concurrent run creating it too is fine)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            found = client.get_experiment(client.create_experiment(name, tags={KIND_TAG: MODEL_TRAINING}))
        except MlflowException:  # another run created it between the two calls
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if KIND_TAG not in found.tags:  # made by an older scribbles, or by hand: the user's own choice stays
        client.set_experiment_tag(found.experiment_id, KIND_TAG, MODEL_TRAINING)
    return str(found.experiment_id)


def fold_name(tags: dict[str, str], index: int) -> str:
    """``fold-3``; under repeated CV ``repeat-1/fold-3`` (fold 3 of repeat 1), with its tags alongside."""
    per_repeat = int(tags.get("folds_per_repeat") or 0)
    if per_repeat <= 0:
        return f"fold-{index}"
    return f"repeat-{index // per_repeat}/fold-{index % per_repeat}"


def describe(ctx: RunContext) -> str:
    """The run's description (``mlflow.note.content``): what produced it, in one paragraph."""
    tags = ctx.tags
    lines = [
        f"**{ctx.experiment}**: {ctx.n_folds} folds of `{tags.get('splitter', '?')}`, "
        f"model `{ctx.config.get('model', {}).get('name', '?')}`, strategy `{tags.get('strategy', '?')}`.",
        f"Data `{ctx.data_source}` (md5 `{ctx.data_version}`"
        + (f", rev `{ctx.data_rev}`" if ctx.data_rev else "") + ").",
        f"Code at commit `{tags.get('git_commit', 'unknown')}`.",
    ]
    if tags.get("allow_dirty") == "true":
        lines.append("Ran with `--allow-dirty`: the data differed from what DVC records.")
    if tags.get("rerun_of"):
        lines.append(f"A rerun of run `{tags['rerun_of']}`.")
    return "\n\n".join(lines)


def _prime() -> None:
    """Work the logging thread would otherwise do during the first fold, while the training thread
    needs the GIL: the plots' matplotlib imports (about 0.4 s), and the map of installed packages that
    MLflow's requirement check builds on the first model save (a scan of every installed distribution,
    about 0.4 s). Called by ``prepare``, so it runs while ``scribbles run`` waits for its Prefect
    server. Best effort: what fails here is done again where it is needed.
    """
    with contextlib.suppress(Exception):
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    with contextlib.suppress(Exception):
        # MLflow's own cache of that map; a private function, so an MLflow without it only loses this.
        from mlflow.utils.requirements_utils import _init_packages_to_modules_map

        _init_packages_to_modules_map()


class MlflowTracker(Tracker):
    """Log to MLflow: parent run, nested fold runs, params, per-epoch and final metrics, lineage."""

    name = "mlflow"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        tracking_uri: str | None = None

    def __init__(self, params: BaseModel | None = None) -> None:
        super().__init__(params)
        self.client: Any = None
        self.experiment_id = ""
        self.parent_id: str | None = None
        self.sweep_id: str | None = None
        #: Fold index -> run id of the fold runs created and not yet ended (written by the logging thread).
        self.fold_ids: dict[int, str] = {}
        self.worker = LogWorker("scribbles-mlflow")
        #: Seconds the training thread spent inside each of this tracker's hooks (for bench/tracking.py).
        self.blocking: dict[str, float] = {}
        self._reset()

    def store(self) -> Any:
        """The MLflow store this tracker writes to, read back (``MlflowRunStore``)."""
        from .run_store import MlflowRunStore

        return MlflowRunStore(self.params.tracking_uri or tracking_uri())

    def _reset(self) -> None:
        self.histories: dict[int, list[dict[str, float]]] = {}
        self.reports: dict[int, dict[str, Any]] = {}
        #: Final metrics of every fold (plain and TTA), for the paired statistics of `scribbles compare`.
        self.scores: dict[int, dict[str, float]] = {}
        self.pooled: np.ndarray | None = None
        #: A regression's (true, predicted) valid values of every fold trained here, for the residual plot.
        self.residuals: list[tuple[np.ndarray, np.ndarray]] = []
        self.classes: list[str] = []
        self.logged_artifacts: set[str] = set()
        #: Per-epoch metrics not yet sent, and when they were last sent.
        self.pending: list[tuple[int, dict[str, float]]] = []
        self.flushed_at = time.monotonic()
        self.current_fold = 0
        #: Where each fold's saved model is: ("folder", a local folder) for a fold trained here, or
        #: ("run", run id) for a reused one. The highest fold's is logged on the parent at the end.
        self.models: dict[int, tuple[str, Any, str]] = {}
        self.tmp = Path(tempfile.gettempdir())  # replaced by a folder of its own when a run starts

    # -- calls that run on the logging thread

    def _submit(self, fn: Callable[..., Any], *args: Any) -> None:
        with stops_deferred():  # a stop between the queued call and its count would let drain() end too soon
            self.worker.submit(fn, *args)

    def _log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(run_id, metrics=batch, synchronous=True)

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
        for start in range(0, len(items), PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[start : start + PARAMS_PER_BATCH], synchronous=True)

    def _log_inputs(self, inputs: list[Any], attempts: int = 4) -> None:
        """``log_inputs`` on the parent; retried when a concurrent run inserted the same dataset first.

        MLflow's SQL store checks for the dataset, then inserts it: two runs of one experiment on the same data
        logging at once on a PostgreSQL server both insert, and the second fails with a unique violation on
        ``dataset_pk`` (seen with 8 concurrent runs, tests/test_team_mode.py). On the retry the dataset exists
        and is only linked to the run.
        """
        from mlflow.exceptions import MlflowException

        for attempt in range(attempts):
            try:
                self.client.log_inputs(self.parent_id, datasets=inputs)
                return
            except MlflowException as exc:
                text = str(exc).lower()
                if attempt == attempts - 1 or not ("unique" in text or "duplicate" in text or "integrity" in text):
                    raise
                time.sleep(0.2 * (attempt + 1))

    def _log_run_records(self, ctx: RunContext) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        self._log_params(self.parent_id, ctx.params)
        source = {"path": ctx.data_source, "rev": ctx.data_rev, "md5": ctx.data_version,
                  "repo": (ctx.config.get("data") or {}).get("repo")}
        dataset = Dataset(
            name=Path(ctx.data_source).stem or "data",
            digest=ctx.data_version[:36],
            source_type="dvc" if ctx.tags.get("data_source") == "dvc" else "local",
            source=json.dumps(source),
        )
        self._log_inputs([DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])])
        self._log_new_artifacts(self.parent_id, ctx.artifacts)

    def _log_new_artifacts(self, run_id: str, artifacts: dict[str, Path]) -> None:
        for name, path in artifacts.items():
            if name not in self.logged_artifacts and Path(path).exists():
                self.client.log_artifact(run_id, str(path))
                self.logged_artifacts.add(name)

    def _create_fold(self, ctx: RunContext, index: int, report: dict[str, Any],
                     extra: dict[str, str] | None = None) -> None:
        tags = {
            PARENT_TAG: self.parent_id or "",
            tag("fold"): str(index),
            **({tag("repeat"): str(index // int(ctx.tags["folds_per_repeat"]))}
               if ctx.tags.get("folds_per_repeat") else {}),
            **tags_of(ctx.tags),
            **tags_of(extra or {}),
        }
        # Params stay on the parent only: the folds of a run share them, and a 40-row insert per fold
        # is logging work that competes with training for the interpreter.
        run = self.client.create_run(self.experiment_id, run_name=fold_name(ctx.tags, index), tags=tags)
        self.fold_ids[index] = run.info.run_id
        self.client.log_dict(run.info.run_id, report, FOLD_REPORT_FILE)

    def _log_epochs(self, index: int, epochs: list[tuple[int, dict[str, float]]],
                    final: dict[str, float] | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for step, metrics in epochs for k, v in metrics.items()]
        batch += [Metric(k, float(v), now, 0) for k, v in (final or {}).items()]
        # One log_batch (the client splits it at MLflow's 1000-entity limit): each store call costs
        # ~7 ms of interpreter time taken from training, whatever its size.
        self.client.log_batch(self.fold_ids[index], metrics=batch, synchronous=True)

    def _pool(self, counts: np.ndarray, classes: list[str]) -> None:
        self.pooled = counts if self.pooled is None else self.pooled + counts
        self.classes = list(classes)

    def _end_fold(self, ctx: FoldEndContext, epochs: list[tuple[int, dict[str, float]]],
                  counts: np.ndarray | None) -> None:
        from mlflow.entities import RunTag

        from .model_log import save_model

        run_id = self.fold_ids[ctx.fold_index]
        self._log_epochs(ctx.fold_index, epochs, ctx.metrics)
        if counts is not None:
            self._pool(counts, list(ctx.classes))
            matrix = {"classes": list(ctx.classes), "rows": "true class", "columns": "predicted class",
                      "counts": counts.tolist()}
            self.client.log_dict(run_id, matrix, CONFUSION_FILE)
        hashes = []
        # The fold's result, what a later identical run or a resume reuses (the fold cache checks its hash).
        result = self.tmp / f"results-{ctx.fold_index}" / RESULT_FILE
        result.parent.mkdir(parents=True, exist_ok=True)
        result.write_text(json.dumps({"fold": ctx.fold_index, "metrics": ctx.metrics, "history": ctx.history}))
        for path in [result, *ctx.artifacts.values()]:
            self.client.log_artifact(run_id, str(path))
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            hashes.append(RunTag(ARTIFACT_HASH_TAG.format(name=Path(path).name), digest))
        if hashes:
            self.client.log_batch(run_id, tags=hashes, synchronous=True)
        if ctx.model is not None and ctx.input_example is not None:
            # Every fold keeps its model: a later resume or cached run takes it from here.
            folder = self.tmp / f"model-{ctx.fold_index}"
            flavour = save_model(ctx.model, ctx.input_example, folder)
            if flavour:
                self.client.log_artifacts(run_id, str(folder), MODEL_FOLDER)
                self.client.set_tag(run_id, tag("model_flavour"), flavour)
                self.models[ctx.fold_index] = ("folder", folder, flavour)
        self.client.set_terminated(self.fold_ids.pop(ctx.fold_index), "FINISHED")

    def _reuse_records(self, index: int, source: str) -> None:
        """A reused fold's confusion counts (pooled, and copied to its new fold run) and its model's place."""
        from mlflow.exceptions import MlflowException

        try:
            path = self.client.download_artifacts(source, CONFUSION_FILE, str(self.tmp / f"reused-{index}"))
            matrix = json.loads(Path(path).read_text())
        except (MlflowException, OSError, ValueError):
            matrix = None  # a source without counts: the pooled matrix leaves this fold out
        if matrix is not None:
            self._pool(np.asarray(matrix["counts"], dtype=np.int64), list(matrix["classes"]))
            if index in self.fold_ids:  # a cached fold's new run
                self.client.log_dict(self.fold_ids[index], matrix, CONFUSION_FILE)
        if any(item.path == MODEL_FOLDER for item in self.client.list_artifacts(source)):
            flavour = self.client.get_run(source).data.tags.get(tag("model_flavour"), "pytorch")
            self.models[index] = ("run", source, flavour)

    def _log_model(self) -> None:
        """The highest fold's model on the parent: saved here, or taken from the run a reused fold came from."""
        from mlflow.entities import LoggedModelOutput, RunTag

        if not self.models:
            return
        index = max(self.models)
        where, value, flavour = self.models[index]
        folder = Path(value) if where == "folder" else Path(
            self.client.download_artifacts(value, MODEL_FOLDER, str(self.tmp / "reused-model")))
        self.client.log_artifacts(self.parent_id, str(folder), MODEL_FOLDER)
        # Also a logged model of the parent run: MLflow 3's UI lists it under the run's "Logged models".
        logged = self.client.create_logged_model(self.experiment_id, name="model", source_run_id=self.parent_id,
                                                 tags={tag("model_fold"): str(index)}, model_type=flavour)
        self.client.log_model_artifacts(logged.model_id, str(folder))
        self.client.finalize_logged_model(logged.model_id, "READY")
        self.client.log_outputs(self.parent_id, [LoggedModelOutput(logged.model_id, step=0)])
        tags = [RunTag(key, value) for key, value in tags_of(
            {"model_flavour": flavour, "model_fold": str(index), "logged_model": logged.model_id}).items()]
        self.client.log_batch(self.parent_id, tags=tags, synchronous=True)

    def _log_fold_report(self) -> None:
        if self.reports:
            self.client.log_dict(self.parent_id, [self.reports[i] for i in sorted(self.reports)], FOLD_REPORT_FILE)

    def _log_fold_scores(self) -> None:
        """``fold_scores.json``: each fold's sizes and final metrics, what paired statistics read back."""
        folds = [{"fold": i, "train_rows": self.reports.get(i, {}).get("train_rows"),
                  "valid_rows": self.reports.get(i, {}).get("valid_rows"), "metrics": self.scores[i]}
                 for i in sorted(self.scores)]
        self.client.log_dict(self.parent_id, {"folds": folds}, SCORES_FILE)

    def _log_run_plots(self, title: str) -> None:
        """Learning curves of every fold and the confusion matrix pooled over folds, on the parent."""
        if self.histories:
            path = plot_learning_curves(self.histories, f"{title}: learning curves", self.tmp / "learning_curves.png")
            self.client.log_artifact(self.parent_id, str(path), "plots")
        if self.residuals:
            true, predicted = (np.concatenate(side) for side in zip(*self.residuals, strict=True))
            path = plot_residuals(true, predicted, f"{title}: every fold's valid rows, no TTA",
                                  self.tmp / "residuals.png")
            self.client.log_artifact(self.parent_id, str(path), "plots")
        if self.pooled is not None:
            path = plot_confusion(self.pooled, self.classes, f"{title}: every fold's valid rows, no TTA",
                                  self.tmp / "confusion_matrix.png")
            self.client.log_artifact(self.parent_id, str(path), "plots")

    def _run_summary(self, ctx: RunEndContext) -> None:
        self._log_metrics(self.parent_id, ctx.summary)
        self._log_new_artifacts(self.parent_id, ctx.run.artifacts)
        self._log_fold_report()
        self._log_fold_scores()

    def _run_close(self) -> None:
        self.client.set_terminated(self.parent_id, "FINISHED")

    # -- lifecycle hooks (the training thread)

    @property
    def blocking_s(self) -> float:
        """Seconds the training thread spent inside this tracker's hooks."""
        return sum(self.blocking.values())

    @contextlib.contextmanager
    def _timed(self, hook: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.blocking[hook] = self.blocking.get(hook, 0.0) + time.perf_counter() - start

    def prepare(self) -> None:
        """Import MLflow and make a SQLite store ready (its tables created: seconds on a new store), before
        the run starts; ``scribbles run`` calls it while the Prefect server starts. Best effort: a store
        that fails here fails the run at run start, with its reason, as without this call."""
        from mlflow.tracking import MlflowClient  # noqa: F401  (MLflow's import: seconds)

        from .store import prepare_store

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # mlflow sets INFO on import
        with contextlib.suppress(Exception):
            prepare_store(self.params.tracking_uri or tracking_uri())
        self.worker.submit(_prime)  # on the logging thread: done before any fold's model is saved there

    def _connect(self, ctx: RunContext) -> None:
        from mlflow.tracking import MlflowClient

        from .store import prepare_store

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # mlflow sets INFO on import
        uri = self.params.tracking_uri or tracking_uri()
        prepare_store(uri)
        self.client = MlflowClient(uri)
        self.experiment_id = experiment_id(self.client, ctx.experiment)

    def _start_sweep(self, ctx: RunContext) -> None:
        """The run that holds a sweep's trials: created and ended here, on the caller's thread (or, for
        ``scribbles resume``, a stopped sweep run reopened)."""
        self._connect(ctx)
        if ctx.continues.get(STORE_RUN_ID):
            with stops_deferred():  # reopened and linked, or left as it was: a stop waits for these writes
                self.sweep_id = ctx.continues[STORE_RUN_ID]
                self.client.update_run(self.sweep_id, status="RUNNING")
                for key in ("pid", "host"):
                    self.client.set_tag(self.sweep_id, tag(key), ctx.tags.get(key, ""))
                self.client.set_tag(self.sweep_id, tag("resumed"), "true")
                ctx.links.update({STORE_RUN_ID: self.sweep_id}, mlflow_experiment_id=self.experiment_id,
                                 mlflow_tracking_uri=mask_text(self.client.tracking_uri))
            return
        tags = {**tags_of(ctx.tags), SOURCE_TAG: "scribbles",
                NOTE_TAG: f"**{ctx.experiment}**: a {ctx.tags.get('sweep', '')} sweep of "
                          f"{ctx.tags.get('trials', '?')} trials; each trial is a nested "
                                       "run with its folds nested under it."}
        # A stop waits for these writes: the sweep run exists only with its id kept (so that run_error ends
        # it), its record written (what `scribbles resume` reads) and its links set.
        with stops_deferred():
            run = self.client.create_run(self.experiment_id, run_name=ctx.run_name or None, tags=tags)
            self.sweep_id = run.info.run_id
            self._log_params(self.sweep_id, ctx.params)
            for path in ctx.artifacts.values():
                self.client.log_artifact(self.sweep_id, str(path))
            ctx.links.update({STORE_RUN_ID: self.sweep_id}, mlflow_experiment_id=self.experiment_id,
                             mlflow_tracking_uri=mask_text(self.client.tracking_uri))

    def _end_sweep(self, ctx: RunEndContext) -> None:
        with stops_deferred():  # on the caller's thread: a stop must not cut a store write in half
            self._write_sweep_end(ctx)
        self.sweep_id = None

    def _write_sweep_end(self, ctx: RunEndContext) -> None:
        # not_worse: not significantly worse than the best trial on the same folds (None: folds differ).
        table = [{"rank": rank, "trial": t["trial"], "assignment": t["assignment"], "summary": t["summary"],
                  "not_worse": t.get("not_worse"), "p_vs_best": t.get("p_vs_best"),
                  **({"pruned": t["pruned"]} if t.get("pruned") else {}),
                  "run_id": t.get("links", {}).get(STORE_RUN_ID)} for rank, t in enumerate(ctx.trials, 1)]
        self.client.log_dict(self.sweep_id, table, TRIALS_FILE)
        self._log_metrics(self.sweep_id, ctx.summary)
        if ctx.trials:
            best = ctx.trials[0].get("links", {}).get(STORE_RUN_ID, "")
            self.client.set_tag(self.sweep_id, tag("best_trial"), best)
        self.client.set_terminated(self.sweep_id, "FINISHED")

    def _continue(self, ctx: RunContext) -> None:
        """Reopen a stopped parent run (``scribbles resume``): RUNNING again, stale fold runs ended."""
        from mlflow.entities import RunTag

        self.parent_id = ctx.continues[STORE_RUN_ID]
        self.client.update_run(self.parent_id, status="RUNNING")
        stale = self.client.search_runs(
            [self.experiment_id], f"tags.\"{PARENT_TAG}\" = '{self.parent_id}' and attributes.status != "
            "'FINISHED'", max_results=1000)
        for run in stale:  # a fold the stop cut short: trained again in a new fold run
            if run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, "KILLED")
            self.client.set_tag(run.info.run_id, tag("superseded"), "true")
        resumed = [RunTag(key, value) for key, value in tags_of(
            {"resumed": "true", "pid": ctx.tags.get("pid", ""), "host": ctx.tags.get("host", "")}).items()]
        self.client.log_batch(self.parent_id, tags=resumed, synchronous=True)

    @hookimpl
    def scribbles_run_start(self, ctx: RunContext) -> None:
        if not is_global_zero():
            return
        if ctx.kind == "sweep":
            self._start_sweep(ctx)
            return
        with self._timed("run_start"):
            self._reset()
            self.tmp = Path(tempfile.mkdtemp(prefix="scribbles-mlflow-"))
            self._connect(ctx)
            if ctx.continues.get(STORE_RUN_ID):
                with stops_deferred():  # reopened and linked, or left as it was
                    self._continue(ctx)
                    self._link(ctx)
                return
            commit = ctx.tags.get("git_commit", "")
            tags = {
                **tags_of(ctx.tags),
                NOTE_TAG: describe(ctx),
                SOURCE_TAG: "scribbles",
                **({COMMIT_TAG: commit.removesuffix("+dirty")} if commit not in ("", "unknown") else {}),
            }
            if ctx.parent is not None and ctx.parent.links.get(STORE_RUN_ID):
                tags[PARENT_TAG] = ctx.parent.links[STORE_RUN_ID]  # a sweep trial
            # A stop waits for these three writes (DESIGN: a stop ends every run it opened KILLED, and the
            # line it prints names a run that `scribbles resume` can finish): the run exists in the store only
            # with its id kept here (run_error ends it), its config recorded (what resume reads) and its
            # links set (the lifecycle names a linked run in the resume line). A stop that lands inside
            # create_run would leave a run nothing ends, or MLflow's SQL session cut mid-flush.
            with stops_deferred():
                run = self.client.create_run(self.experiment_id, run_name=ctx.run_name or None, tags=tags)
                self.parent_id = run.info.run_id
                self.client.log_dict(self.parent_id, ctx.config, CONFIG_FILE)
                self._link(ctx)
            self._submit(self._log_run_records, ctx)

    def _link(self, ctx: RunContext) -> None:
        ctx.links[STORE_RUN_ID] = self.parent_id or ""
        ctx.links["mlflow_experiment_id"] = self.experiment_id
        ctx.links["mlflow_tracking_uri"] = mask_text(self.client.tracking_uri)  # links are printed

    @hookimpl
    def scribbles_fold_start(self, ctx: FoldContext) -> None:
        if self.parent_id is None:
            return
        with self._timed("fold_start"):
            self.reports[ctx.fold.index] = ctx.report
            self.histories[ctx.fold.index] = []
            if ctx.reuse == "resumed":
                return  # the run being finished already holds this fold's finished run
            extra = {"cache_key": ctx.key, "why": ctx.reason[:5000]}
            if ctx.reuse == "cached":
                extra["cached_from"] = ctx.reused_from
            self._submit(self._create_fold, ctx.run, ctx.fold.index, ctx.report, extra)

    @hookimpl
    def scribbles_epoch_end(self, ctx: EpochContext) -> None:
        if self.parent_id is None:
            return
        with self._timed("epoch_end"):
            metrics = dict(ctx.metrics)
            self.histories.setdefault(ctx.fold_index, []).append(metrics)
            self.pending.append((ctx.epoch, metrics))
            self.current_fold = ctx.fold_index
            # Batched: one write per FLUSH_S keeps the UI live without a write per epoch.
            if time.monotonic() - self.flushed_at >= FLUSH_S:
                self._submit(self._log_epochs, ctx.fold_index, self.pending)
                self.pending, self.flushed_at = [], time.monotonic()

    @hookimpl
    def scribbles_fold_end(self, ctx: FoldEndContext) -> None:
        if self.parent_id is None:
            return
        with self._timed("fold_end"):
            self.scores[ctx.fold_index] = {k: float(v) for k, v in ctx.metrics.items()}
            if ctx.reuse == "resumed":  # the run being finished holds the fold run: draw, do not log again
                self.histories[ctx.fold_index] = [dict(epoch) for epoch in ctx.history]
            if ctx.reuse and ctx.reused_from:
                self._submit(self._reuse_records, ctx.fold_index, ctx.reused_from)
            if ctx.reuse == "resumed":
                return
            counts = None
            if ctx.y_true is not None and ctx.y_pred is not None and ctx.classes:
                counts = confusion_counts(ctx.y_true, ctx.y_pred, len(ctx.classes))
            elif ctx.y_true is not None and ctx.y_pred is not None:  # regression: residuals, not counts
                self.residuals.append((np.asarray(ctx.y_true, dtype=float), np.asarray(ctx.y_pred, dtype=float)))
            self._submit(self._end_fold, ctx, self.pending, counts)
            self.pending, self.flushed_at = [], time.monotonic()

    @hookimpl
    def scribbles_run_end(self, ctx: RunEndContext) -> None:
        if ctx.run.kind == "sweep":
            if self.sweep_id is not None:
                self._end_sweep(ctx)
            return
        if self.parent_id is None:
            return
        with self._timed("run_end"):
            self._submit(self._run_summary, ctx)
            # The model and the plots wait for the end: drawn while training runs, they slowed it by
            # as much as they cost (the logging thread and training share one interpreter lock).
            self._submit(self._log_model)
            self._submit(self._log_run_plots, ctx.run.experiment)
            self._submit(self._run_close)
            self.worker.drain()  # a logging failure fails the run (run_error then marks it FAILED)
        self.parent_id = None
        self.worker.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @hookimpl
    def scribbles_run_error(self, ctx: RunErrorContext) -> None:
        if ctx.run.kind == "sweep":
            if self.sweep_id is not None:
                error = mask_text(f"{type(ctx.error).__name__}: {ctx.error}")[:5000]
                self.client.set_tag(self.sweep_id, tag("error"), error)
                self.client.set_terminated(self.sweep_id, ctx.status)
                self.sweep_id = None
            return
        if self.client is None or self.parent_id is None:
            return
        # Whatever was queued goes first (bounded: a stop must stay prompt), then the final statuses:
        # never leave a run RUNNING, folds included.
        if self.pending:
            self._submit(self._log_epochs, self.current_fold, self.pending)
            self.pending = []
        self.worker.drain(timeout=ERROR_DRAIN_S, raise_errors=False)
        try:
            self._log_fold_report()  # no plots: drawing them would delay a stop
        except Exception:  # the statuses below matter more than the report
            logging.getLogger(__name__).warning("could not log the fold report of a stopped run", exc_info=True)
        for run_id in list(self.fold_ids.values()):
            self.client.set_terminated(run_id, ctx.status)
        self.fold_ids.clear()
        message = mask_text(f"{type(ctx.error).__name__}: {ctx.error}")[:5000]
        self.client.set_tag(self.parent_id, tag("error"), message)
        self.client.set_terminated(self.parent_id, ctx.status)
        self.parent_id = None
        self.worker.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
