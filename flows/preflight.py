"""Checks a run makes before Prefect starts, so that bad data is reported in seconds, not after startup.

Prefect's temporary server takes up to a minute to start on a busy machine; a missing column or an
unreadable file should not wait for it. The flow loads the data again (its load task is the one that
is cached and tracked); reading a demo-sized file twice costs well under a second.
"""

from __future__ import annotations

import sys

from scribbles.core import BadInput, Dataset, Plan
from scribbles.core.data import check_steps, check_target, constant_features, fold_warnings, guarded_folds

from .settings import named


def preflight(plan: Plan) -> None:
    """Check the stores, load the data, check its target, make every fold through the leakage guard, then
    check the features against the preprocessing steps.

    Raises what the flow would raise, before Prefect starts. Constant feature columns get one warning
    line on stderr.
    """
    check_stores(plan)
    if plan.config.train.dask_address:
        check_scheduler(plan.config.train.dask_address)
    dataset = load_data(plan)
    check_target(dataset, plan.config.task, "task" in plan.config.model_fields_set)
    # The folds before the features: a grouped splitter without data.group leaves the group column among
    # the features, and "data.group is missing" is the fix, not "encode the subject column".
    folds = guarded_folds(plan.splitter, dataset)  # the flow's own split and leakage guard (fold_task.folds_for)
    check_steps(plan.preprocess, dataset)
    for line in fold_warnings(dataset, folds, plan.config.task):
        print(f"warning: {line}", file=sys.stderr)
    # Image borders are often constant: a warning there would be noise.
    constant = constant_features(dataset) if dataset.kind == "tabular" else []
    if constant:
        more = f" and {len(constant) - 5} more" if len(constant) > 5 else ""
        print(f"warning: data.features: {', '.join(constant[:5])}{more} hold one value (or none) on every row "
              "and carry no information; leave them out of data.features", file=sys.stderr)


def load_data(plan: Plan) -> Dataset:
    """``plan.data.load()``; when that fails, a fault of the target or the folds is raised first when there is one.

    A data source checks the features as it reads them (``data.shape``, infinite values), but on sequence or
    image data a grouped splitter without ``data.group`` leaves the group column among the features, so the
    shape is off by one column: the missing ``data.group`` is the fix, not the shape. The roles alone
    (``load_roles``, what ``scribbles split`` reads) are read again only on this failing path.
    """
    try:
        return plan.data.load()
    except BadInput:
        roles = plan.data.load_roles()
        check_target(roles, plan.config.task, "task" in plan.config.model_fields_set)
        guarded_folds(plan.splitter, roles)
        raise


def check_stores(plan: Plan) -> None:
    """Every tracker's run store can be opened (``RunStore.check``): checked in seconds, writing nothing."""
    for index, tracker in enumerate(plan.trackers):
        store = tracker.store()
        if store is not None:
            own = tracker.params.model_dump().get("tracking_uri")
            store.check(field=f"tracking.{index}.tracking_uri" if own else named("MLFLOW_TRACKING_URI"))


#: Seconds a Dask scheduler may take to accept a connection (Dask's own client waits 30 s, then tracebacks).
SCHEDULER_CHECK_SECONDS = 3.0


def check_scheduler(address: str) -> None:
    """BadInput unless something accepts TCP connections at the Dask scheduler ``address`` (``tcp://HOST:PORT``,
    ``tls://HOST:PORT`` or ``HOST:PORT``; port 8786, Dask's default, when none is given) within a few seconds."""
    import socket
    import urllib.parse

    parts = urllib.parse.urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port or 8786
    except ValueError:
        host = None
    if parts.scheme not in ("tcp", "tls") or not host:
        raise BadInput(f"train.dask_address: {address!r} is not a Dask scheduler address; give tcp://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=SCHEDULER_CHECK_SECONDS).close()
    except OSError as exc:
        raise BadInput(f"train.dask_address: no Dask scheduler answers at {address} within "
                       f"{SCHEDULER_CHECK_SECONDS:.0f} s ({exc.strerror or exc}); start it (`dask scheduler`) or drop "
                       "train.dask_address to train the folds here") from None
