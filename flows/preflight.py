"""Checks a run makes before Prefect starts, so that bad data is reported in seconds, not after startup.

Prefect's temporary server takes up to a minute to start on a busy machine; a missing column or an
unreadable file should not wait for it. The flow loads the data again (its load task is the one that
is cached and tracked); reading a demo-sized file twice costs well under a second.
"""

from __future__ import annotations

from scribbles.core import Plan
from scribbles.core.guard import check_fold


def preflight(plan: Plan) -> None:
    """Load the data and make every fold through the leakage guard; raise what the flow would raise."""
    dataset = plan.data.load()
    for fold in plan.splitter.split(dataset):
        check_fold(dataset, fold, plan.splitter)
