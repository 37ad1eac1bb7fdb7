"""Checks a run makes before Prefect starts, so that bad data is reported in seconds, not after startup.

Prefect's temporary server takes up to a minute to start on a busy machine; a missing column or an
unreadable file should not wait for it. The flow loads the data again (its load task is the one that
is cached and tracked); reading a demo-sized file twice costs well under a second.
"""

from __future__ import annotations

import sys

from scribbles.core import Plan
from scribbles.core.data import check_fold, check_steps, check_target, constant_features


def preflight(plan: Plan) -> None:
    """Check the stores, load the data, check its target and make every fold through the leakage guard.

    Raises what the flow would raise, before Prefect starts. Constant feature columns get one warning
    line on stderr.
    """
    check_stores(plan)
    dataset = plan.data.load()
    check_target(dataset, plan.config.task)
    check_steps(plan.preprocess, dataset)
    # Image borders are often constant: a warning there would be noise.
    constant = constant_features(dataset) if dataset.kind == "tabular" else []
    if constant:
        more = f" and {len(constant) - 5} more" if len(constant) > 5 else ""
        print(f"warning: data.features: {', '.join(constant[:5])}{more} hold one value on every row and carry "
              "no information; leave them out of data.features", file=sys.stderr)
    for fold in plan.splitter.split(dataset):
        check_fold(dataset, fold, plan.splitter)


def check_stores(plan: Plan) -> None:
    """Every MLflow tracker's store can be opened (see ``check_store``): checked in seconds, writing nothing."""
    from scribbles.plugins.trackers import tracking_uri
    from scribbles.plugins.trackers.store import check_store

    for index, tracker in enumerate(plan.trackers):
        if tracker.name == "mlflow":
            own = getattr(tracker.params, "tracking_uri", None)
            check_store(own or tracking_uri(), f"tracking.{index}.tracking_uri" if own else "MLFLOW_TRACKING_URI")
