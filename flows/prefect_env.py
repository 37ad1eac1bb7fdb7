"""Prefect settings scribbles needs before prefect is imported: offline, quiet, patient."""

from __future__ import annotations

import logging
import os

DEFAULTS = {
    # There is no network: Prefect must not try to send analytics.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # The temporary server can take over 20 s to start on a busy 2-core machine.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # scribbles prints its own progress; Prefect's INFO lines would interleave with it.
    "PREFECT_LOGGING_LEVEL": "WARNING",
}

#: Loggers that print CancelledError tracebacks while the temporary server shuts down.
SHUTDOWN_NOISE = (
    "prefect.events.clients",
    "prefect._internal.concurrency",
    "prefect.server",
    "prefect.server.events",
    "prefect.server.services",
    "sqlalchemy.pool",
    "sqlalchemy.pool.impl.AsyncAdaptedQueuePool",
    "uvicorn.error",
    "asyncio",
)
#: Libraries whose INFO lines (database migrations, say) would clutter the command's output.
CHATTY = ("mlflow", "alembic", "dvc")


def configure_prefect() -> None:
    """Set Prefect's environment defaults (a user's own settings win) and mute shutdown noise."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    for name in SHUTDOWN_NOISE:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
