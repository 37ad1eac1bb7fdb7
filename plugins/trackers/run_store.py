"""The ``mlflow`` tracker's run store: scribbles' runs read back from MLflow (``scribbles.core.run_store``).

Every MLflow call the flows need after a run was written lives here: searching runs, reading a run's
record and artifacts, ending a pruned trial, the model registry (``promote``) and copying a store
(``store migrate``). mlflow is imported inside the methods: the registry loads without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from scribbles.core import BadInput
from scribbles.core.redact import mask_text
from scribbles.core.run_store import Migration, ModelVersion, StoredRun

from .names import ARTIFACT_FILES, ARTIFACT_HASH_TAG, MODEL_FOLDER, PARENT_TAG, record_of, tag, tags_of
from .store import SERVER_CHECK_SECONDS, check_store, request_for, sqlite_path, tracking_uri


def stored(run: Any) -> StoredRun:
    """An MLflow run as a ``StoredRun``."""
    tags = run.data.tags
    return StoredRun(
        run_id=run.info.run_id, name=run.info.run_name or "", experiment_id=str(run.info.experiment_id),
        status=run.info.status, active=run.info.lifecycle_stage == "active", start_time=run.info.start_time or 0,
        parent_id=tags.get(PARENT_TAG, ""), params=dict(run.data.params), metrics=dict(run.data.metrics),
        record=record_of(tags),
    )


def _check_api(uri: str) -> None:
    """BadInput unless the server at ``uri`` answers MLflow's experiment search with MLflow's JSON."""
    import json
    import urllib.error
    import urllib.request

    request = request_for(uri, "/api/2.0/mlflow/experiments/search?max_results=1")
    try:
        with urllib.request.urlopen(request, timeout=SERVER_CHECK_SECONDS) as answer:
            body = json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise BadInput(f"mlflow: the server at {mask_text(uri)} answers, but not MLflow's REST API (HTTP {exc.code} "
                       "on /api/2.0/mlflow/experiments/search); point MLFLOW_TRACKING_URI at an MLflow tracking "
                       "server") from None
    except (OSError, ValueError) as exc:
        raise BadInput(f"mlflow: the server at {mask_text(uri)} does not answer MLflow's REST API "
                       f"({getattr(exc, 'reason', exc)}); point MLFLOW_TRACKING_URI at an MLflow tracking "
                       "server") from None
    if not isinstance(body, dict) or not ("experiments" in body or body == {}):
        raise BadInput(f"mlflow: the server at {mask_text(uri)} answers, but not as MLflow does; point "
                       "MLFLOW_TRACKING_URI at an MLflow tracking server")


@contextlib.contextmanager
def _default_store(uri: str) -> Iterator[None]:
    """MLflow's default store is ``uri`` in the block. Its SQLite registry opens a bare ``MlflowClient()`` inside
    ``create_model_version`` (to check the logged model), which reads the default store: without this, a run
    kept in a config's own store could not be promoted, and ./mlflow.db was created on the way."""
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  (MLflow takes None: back to the environment)
        if previous is not None:
            os.environ["MLFLOW_TRACKING_URI"] = previous


def _quoted(value: str) -> str:
    return value.replace("'", "\\'")


class MlflowRunStore:
    """An MLflow tracking store (SQLite file, folder or server) read back in scribbles' terms."""

    def __init__(self, uri: str | None = None) -> None:
        self.uri = uri or tracking_uri()
        self._client: Any = None

    @property
    def shown(self) -> str:
        return mask_text(self.uri)

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.uri)
        return self._client

    def check(self, must_exist: bool = False, field: str = "tracking") -> None:
        check_store(self.uri, field, must_exist=must_exist)

    def health(self) -> str:
        """What answers at the store, in a few words; BadInput when it cannot be used. Writes nothing.

        A server must answer MLflow's REST API (any HTTP server would answer ``/health``).
        """
        self.check(field="mlflow")
        if self.uri.startswith(("http://", "https://")):
            _check_api(self.uri)
            return "the MLflow tracking server answers"
        path = sqlite_path(self.uri)
        if path is not None:
            return "SQLite store, intact" if path.exists() else "a new store will be created on the first run"
        return "the store can be opened"

    def get(self, run_id: str) -> StoredRun | None:
        from mlflow.exceptions import MlflowException

        try:
            return stored(self.client.get_run(run_id))
        except MlflowException:
            return None

    def experiment_name(self, experiment_id: str) -> str:
        return str(self.client.get_experiment(experiment_id).name)

    def experiment_names(self) -> list[str]:
        return sorted(e.name for e in self.client.search_experiments())

    def _experiment_ids(self, experiment: str | None) -> list[str]:
        if experiment is None:
            return [e.experiment_id for e in self.client.search_experiments()]
        found = self.client.get_experiment_by_name(experiment)
        return [found.experiment_id] if found is not None else []

    def runs(self, experiment: str | None = None, *, parent: str | None = None, status: str | None = None,
             record: Mapping[str, str] | None = None, limit: int = 1000, id_prefix: str | None = None
             ) -> list[StoredRun]:
        ids = self._experiment_ids(experiment)
        if not ids:
            return []
        terms = [f"attributes.status = '{_quoted(status)}'"] if status else []
        if id_prefix:
            terms.append(f"attributes.run_id LIKE '{_quoted(id_prefix)}%'")
        if parent is not None:
            terms.append(f"tags.\"{PARENT_TAG}\" = '{_quoted(parent)}'")
        for key, value in (record or {}).items():
            name = f"tags.\"{tag(key)}\""
            terms.append(f"{name} LIKE '%'" if value == "*" else f"{name} = '{_quoted(value)}'")
        found = self.client.search_runs(ids, " and ".join(terms), order_by=["attributes.start_time DESC"],
                                        max_results=limit)
        return [stored(run) for run in found]

    def artifact(self, run_id: str, name: str) -> bytes | None:
        with tempfile.TemporaryDirectory(prefix="scribbles-store-") as tmp:
            for file in ARTIFACT_FILES[name]:
                try:
                    path = self.client.download_artifacts(run_id, file, tmp)
                except Exception:  # MlflowException or OSError: try the next name; the caller says what is missing
                    continue
                return Path(path).read_bytes()
        return None

    def verified_artifact(self, run: StoredRun, name: str) -> bytes | str:
        """The bytes of ``run``'s artifact ``name`` when they match the sha256 recorded when the run finished;
        else why they cannot be trusted (one line)."""
        file = ARTIFACT_FILES[name][0]
        recorded = run.record.get(ARTIFACT_HASH_TAG.format(name=file).removeprefix("scribbles."))
        if not recorded:
            return f"cached result of run {run.run_id} has no content hash (an older run)"
        raw = self.artifact(run.run_id, name)
        if raw is None:
            return f"cached result of run {run.run_id} is gone"
        if hashlib.sha256(raw).hexdigest() != recorded:
            return f"cached result of run {run.run_id} was modified"
        return raw

    def set_record(self, run_id: str, values: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(key, value) for key, value in tags_of(values).items()]
        self.client.log_batch(run_id, tags=items, synchronous=True)

    def end(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status)

    # -- the model registry (`scribbles promote`)

    def alias_holder(self, name: str, alias: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None
        return ModelVersion(name, str(found.version), str(found.run_id))

    def _has_model(self, run_id: str) -> bool:
        return any(item.path == MODEL_FOLDER for item in self.client.list_artifacts(run_id))

    def ensemble(self, run: StoredRun, folds: list[StoredRun], out: Path) -> tuple[Path, int]:
        """The fold models of ``run`` saved in ``out`` as one ``Ensemble`` (pytorch flavour); folder and count.

        BadInput when a fold kept no model or kept one outside torch (a one-hot pipeline's pyfunc model).
        """
        import mlflow.pytorch as mlflow_pytorch
        from mlflow.models import Model
        from scribbles.core.evaluation import Ensemble

        from .model_log import save_model

        members, example = [], None
        for fold in folds:
            source = fold.run_id
            if not self._has_model(source) and fold.record.get("cached_from"):
                source = fold.record["cached_from"]  # a reused fold's model stays with its source run
            if not self._has_model(source):
                raise BadInput(f"RUN_ID: fold {fold.fold} of run {run.run_id} kept no model (its model family is "
                               "not a torch module); such a run cannot be promoted")
            origin = self.get(source)
            flavour = origin.record.get("model_flavour", "pytorch") if origin is not None else "pytorch"
            if flavour != "pytorch":
                raise BadInput(f"RUN_ID: the fold models of run {run.run_id} are MLflow '{flavour}' models (a "
                               "one-hot preprocessing step keeps them outside torch); promote ensembles pytorch "
                               "fold models only: register one with mlflow.register_model, or encode the text "
                               "columns before the run")
            local = self.client.download_artifacts(source, MODEL_FOLDER, str(out / f"fold-{fold.fold}"))
            members.append(mlflow_pytorch.load_model(local))
            if example is None:
                example = Model.load(local).load_input_example(local)
        if not members:
            raise BadInput(f"RUN_ID: run {run.run_id} has no finished fold runs to promote")
        folder = out / "ensemble"
        save_model(Ensemble(members), example, folder)
        return folder, len(members)

    def register(self, run: StoredRun, folder: Path, name: str, alias: str, record: Mapping[str, str],
                 description: str) -> str:
        """As the protocol says; when any step fails, what this call made (the logged model, a registered
        model it created that holds no version) is removed again, and the error raised."""
        from mlflow.entities import LoggedModelOutput
        from mlflow.exceptions import MlflowException

        tags = tags_of(record)
        client = self.client
        created_model, logged = False, None
        try:
            with _default_store(self.uri):
                logged = client.create_logged_model(run.experiment_id, name="fold-ensemble",
                                                    source_run_id=run.run_id, tags=tags,
                                                    model_type="scribbles fold ensemble")
                client.log_model_artifacts(logged.model_id, str(folder))
                client.finalize_logged_model(logged.model_id, "READY")
                try:
                    client.create_registered_model(name, description=f"Models of the scribbles experiment {name!r}")
                    created_model = True
                except MlflowException as exc:
                    if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
                        raise
                version = client.create_model_version(name, source=f"models:/{logged.model_id}", run_id=run.run_id,
                                                      tags=tags, model_id=logged.model_id, description=description)
                client.set_registered_model_alias(name, alias, version.version)
                client.log_outputs(run.run_id, [LoggedModelOutput(logged.model_id, step=0)])
        except BaseException:
            with contextlib.suppress(Exception):  # the error below matters more than a clean-up's
                if logged is not None:
                    client.delete_logged_model(logged.model_id)
                if created_model and not client.search_model_versions(f"name = '{_quoted(name)}'"):
                    client.delete_registered_model(name)
            raise
        return str(version.version)

    # -- copying a store (`scribbles store migrate`)

    def copy_to(self, target: str, progress: Callable[[str], None] = lambda line: None) -> Migration:
        from .migrate import migrate

        return migrate(self.uri, target, progress)
