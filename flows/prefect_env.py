"""Prefect settings scribbles needs before prefect is imported: offline, quiet, patient."""

from __future__ import annotations

import logging
import os

from .interrupts import causes

DEFAULTS = {
    # There is no network: Prefect must not try to send analytics.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # The temporary server can take over 20 s to start on a busy 2-core machine.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # scribbles prints its own progress; Prefect's INFO lines would interleave with it.
    "PREFECT_LOGGING_LEVEL": "WARNING",
    # MLflow draws a progress bar for every artifact it downloads (cache lookups, reruns): noise here.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # No network, and nothing leaves the machine unasked: MLflow's usage telemetry is off.
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # On a tracking server MLflow prints "View run ... at: URL" for every run it ends (folds included);
    # scribbles prints the parent run's link itself.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
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
    # MLflow logs a failing store's error before raising it; the command reports it once, in one line.
    "mlflow.store.db.utils",
)
#: Libraries whose INFO lines (database migrations, say) would clutter the command's output.
CHATTY = ("mlflow", "alembic", "dvc")


class HideUserErrors(logging.Filter):
    """Drop Prefect's task/flow failure records caused by a ScribblesError or an interrupt.

    The command line reports those in one line (exit 2 for bad input); Prefect would print the
    same error again with a traceback. Other exceptions keep their tracebacks: those are bugs.
    """

    NAMES = ("ScribblesError(", "BadInput(", "ConfigError(", "PluginError(", "LeakageError(")
    #: "Type: message" of errors raised in an installed plugin's code: the command reports each in one
    #: line naming the plugin (its traceback kept in a file), so Prefect's later lines about it go too.
    plugin_errors: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        from scribbles.core import ScribblesError
        from scribbles.core.registry import raised_in_plugin

        if record.exc_info and _caused_by(record.exc_info[1], (ScribblesError, KeyboardInterrupt)):
            return False
        if record.exc_info and record.exc_info[1] is not None and raised_in_plugin(record.exc_info[1]):
            error = record.exc_info[1]
            self.plugin_errors.add(f"{type(error).__name__}: {error}")
            return False
        message = record.getMessage()
        if any(error in message for error in self.plugin_errors):
            return False
        if "aborted by an interrupt signal" in message or "aborted by a termination signal" in message:
            return False  # Ctrl-C or SIGTERM: the command says "stopped" itself, and the runs end KILLED
        # Prefect words it "...Failed('Task run encountered an exception BadInput: ...')".
        names = {f"{kind.__name__}(" for kind in _kinds(ScribblesError)} | set(self.NAMES)
        return not any(name in message or f"exception {name[:-1]}:" in message for name in names)


def _kinds(base: type[BaseException]) -> list[type[BaseException]]:
    """``base`` and every subclass of it defined so far (ServerLost, a plugin's own errors)."""
    found, todo = [], [base]
    while todo:
        kind = todo.pop()
        found.append(kind)
        todo.extend(kind.__subclasses__())
    return found


def _caused_by(exc: BaseException | None, kinds: tuple[type[BaseException], ...]) -> bool:
    """True when ``exc`` or an exception it was raised while handling is one of ``kinds``.

    A stop can land inside a library (torch.save, say), which then raises its own error about it.
    """
    return exc is not None and any(isinstance(cause, kinds) for cause in causes(exc))


RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs", "prefect.task_engine", "prefect.flow_engine")


def configure_prefect() -> None:
    """Set Prefect's environment defaults (a user's own settings win) and mute shutdown noise."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    for name in SHUTDOWN_NOISE:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, HideUserErrors) for f in logger.filters):
            logger.addFilter(HideUserErrors())
