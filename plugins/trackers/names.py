"""Every name the ``mlflow`` tracker gives what it stores: tags, artifacts, and how a record maps onto them.

The flows and core speak of a run's *record* (``RunContext.tags``, ``StoredRun.record``: ``data_version``,
``fold``, ``cache_key``, ...); here alone a record key becomes an MLflow tag (``scribbles.data_version``), a
parent becomes ``mlflow.parentRunId``, and a protocol artifact (``scribbles.core.run_store.CONFIG``)
becomes a file. Renaming anything the store holds is a change to this module.
"""

from __future__ import annotations

from collections.abc import Mapping

from scribbles.core.run_store import CONFIG, FOLD_RESULT, FOLD_SCORES

#: Every scribbles tag starts with this; the rest of the name is the record key.
PREFIX = "scribbles."
#: MLflow's own tag linking a nested run to its parent (a fold to its run, a trial to its sweep).
PARENT_TAG = "mlflow.parentRunId"
#: The run description MLflow's UI shows, and the tag naming what made the run.
NOTE_TAG, SOURCE_TAG, COMMIT_TAG = "mlflow.note.content", "mlflow.source.name", "mlflow.source.git.commit"
#: The sha256 of a fold artifact's content, recorded when the fold run finishes (the fold cache checks it).
ARTIFACT_HASH_TAG = PREFIX + "sha256.{name}"
#: A copied run's source id (``scribbles store migrate``) and the parent's logged model id.
MIGRATED_TAG, LOGGED_MODEL_TAG = PREFIX + "migrated_from", PREFIX + "logged_model"

#: The files behind each protocol artifact, first found wins (older runs used the later names).
ARTIFACT_FILES: Mapping[str, tuple[str, ...]] = {
    CONFIG: ("config.yaml", "resolved_config.yaml", "sweep_config.yaml"),
    FOLD_RESULT: ("fold_result.json",),
    FOLD_SCORES: ("fold_scores.json",),
}
RESULT_FILE, SCORES_FILE, CONFIG_FILE = "fold_result.json", "fold_scores.json", "config.yaml"
FOLD_REPORT_FILE, CONFUSION_FILE, TRIALS_FILE = "fold_report.json", "confusion_matrix.json", "trials.json"
#: The artifact folder a fold run's (and the parent's) model is saved under.
MODEL_FOLDER = "model"


def tag(key: str) -> str:
    """The MLflow tag of record key ``key`` (``fold`` -> ``scribbles.fold``); MLflow's own tags pass as they are."""
    return key if key.startswith(("mlflow.", PREFIX)) else PREFIX + key


def tags_of(record: Mapping[str, str]) -> dict[str, str]:
    """A record as MLflow tags."""
    return {tag(key): str(value) for key, value in record.items()}


def record_of(tags: Mapping[str, str]) -> dict[str, str]:
    """The scribbles record held in a run's MLflow tags (MLflow's own tags left out)."""
    return {key[len(PREFIX):]: value for key, value in tags.items() if key.startswith(PREFIX)}
