"""The data a run reads must be the data its version tag names: checked before any work."""

from __future__ import annotations

from scribbles.core import ExperimentConfig, Plan, Registry


def allow_dirty_data(config: ExperimentConfig, registry: Registry) -> ExperimentConfig:
    """``config`` with ``data.allow_dirty`` set, for a data source that has that field.

    A source without it (``file``, whose version is always the md5 of its bytes) is left as it is:
    it has no record for its data to differ from.
    """
    cls = registry.get("data", str(config.data.get("name")), "data.name")
    if "allow_dirty" not in cls.Params.model_fields:
        return config
    return config.model_copy(update={"data": {**config.data, "allow_dirty": True}})


def verify_data(plan: Plan) -> str | None:
    """The data version the run will record, when its source can tell before loading.

    Raises BadInput (exit 2) when the data differ from what DVC records and dirty data is not allowed.
    """
    return plan.data.verify()
