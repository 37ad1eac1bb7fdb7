"""Errors that the command line turns into exit codes and one-line messages."""

from __future__ import annotations


class ScribblesError(Exception):
    """A failure during a run: exit code 1, a message and no traceback."""

    exit_code = 1


class BadInput(ScribblesError):
    """A user mistake (config, names, data): exit code 2, says what to fix."""

    exit_code = 2


class ConfigError(BadInput):
    """A config field is missing, unknown or invalid; ``field`` is its dotted path."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class PluginError(BadInput):
    """A plugin is broken or two plugins clash; the message names the distribution."""


class LeakageError(ScribblesError):
    """A fold leaks between train and validation: the run stops before any training."""


class Diverged(ScribblesError, FloatingPointError):
    """Training diverged (a loss that is not finite): a failure of the run, reported in one line.

    Still a FloatingPointError, for code that caught the numeric error before this class existed.
    """


class ScribblesWarning(UserWarning):
    """Something was set right on the way (a damaged file set aside, say); the command line prints one line."""
