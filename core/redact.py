"""Secrets never leave in the clear: masking for configs, params, text, and the process's own output.

What counts as a secret:
- the value under a key that names one (``password``, ``passwd``, ``secret``, ``token``, ``key``,
  ``credential``, ``auth``, ... anywhere in the key's last part: ``api_key``, ``hf_token``, ``db_passwd``);
- the user info of any URL (``https://user:PASSWORD@host`` keeps the user, ``https://TOKEN@host`` keeps
  nothing) and query parameters whose name names a secret (``?access_token=...``, ``&sig=...``);
- the same inside a string that holds JSON (a param given as a JSON document).

Every secret masked is also remembered (``remember``), so that ``mask_text`` masks it wherever else it
turns up: an error message, a library's log line, a tag. ``remember_environment`` adds the secrets of
this process's environment (``MLFLOW_TRACKING_URI``'s password, ``*_TOKEN``, ...). ``MaskedStream``
masks whatever passes through ``sys.stdout`` and ``sys.stderr`` once ``mask_output()`` is called.
Imports nothing beyond the standard library, so every layer can use it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

MASK = "***"
#: A key whose last part contains one of these words holds a secret (``api_key``, ``hf_token``, ...).
SECRET_WORDS = ("token", "password", "passwd", "secret", "key", "credential", "auth", "cookie",
                "signature", "bearer", "session", "sig")
#: Key names that contain a secret word but name none.
NOT_SECRET = frozenset({"author", "authors", "keys", "session_name", "signature_version", "design"})
#: The shortest value remembered for masking in free text: shorter ones would mask ordinary words.
MIN_REMEMBERED = 6

_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<userinfo>[^\s/@?#\"']+)@", re.IGNORECASE)
_QUERY = re.compile(r"(?P<head>[?&;](?P<name>[A-Za-z0-9_.\-]+)=)(?P<value>[^&#\s\"']+)")
_KNOWN: set[str] = set()
_KNOWN_LOCK = threading.Lock()
_KNOWN_PATTERN: list[re.Pattern[str] | None] = [None]


def is_secret(key: str) -> bool:
    """True when the last part of a dotted key names a secret (case-insensitive)."""
    leaf = str(key).rsplit(".", 1)[-1].lower()
    if leaf in NOT_SECRET:
        return False
    return any(word in leaf for word in SECRET_WORDS if word != "sig") or leaf == "sig"


def remember(value: Any) -> None:
    """Mask ``value`` (a secret found somewhere) in every text ``mask_text`` sees from now on."""
    text = str(value)
    if len(text) < MIN_REMEMBERED or text == MASK:
        return
    with _KNOWN_LOCK:
        if text not in _KNOWN:
            _KNOWN.add(text)
            ordered = sorted(_KNOWN, key=len, reverse=True)  # the longest first: no half-masked secret
            _KNOWN_PATTERN[0] = re.compile("|".join(re.escape(k) for k in ordered))


def _userinfo(match: re.Match[str]) -> str:
    info = match.group("userinfo")
    user, colon, password = info.partition(":")
    if colon:
        remember(password)
        return f"{match.group('scheme')}{user}:{MASK}@"
    remember(info)
    return f"{match.group('scheme')}{MASK}@"


def _query(match: re.Match[str]) -> str:
    if not is_secret(match.group("name")) or match.group("value") == MASK:
        return match.group(0)
    remember(match.group("value"))
    return match.group("head") + MASK


def mask_text(text: str) -> str:
    """``text`` with URL user info, secret query parameters and every remembered secret masked."""
    if not text:
        return text
    if "://" in text:
        text = _URL_USERINFO.sub(_userinfo, text)
    if "=" in text:
        text = _QUERY.sub(_query, text)
    pattern = _KNOWN_PATTERN[0]
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return text


def mask_value(value: Any) -> Any:
    """A config value with secrets in URLs, query strings and JSON documents masked; others unchanged."""
    if not isinstance(value, str):
        return value
    stripped = value.strip()
    if stripped[:1] in ("{", "[") and stripped[-1:] in ("}", "]"):
        try:
            document = json.loads(stripped)
        except ValueError:
            pass
        else:
            masked = mask_tree(document)
            if masked != document:
                return json.dumps(masked)
    return mask_text(value)


def mask_params(params: dict[str, str]) -> dict[str, str]:
    """Flattened params with secret keys and URL passwords masked."""
    out = {}
    for key, value in params.items():
        if is_secret(key) and value:
            remember(value)
            out[key] = MASK
        else:
            out[key] = mask_value(value)
    return out


def mask_tree(tree: Any, key: str = "") -> Any:
    """A nested config with secret keys and URL passwords masked (the input is not changed)."""
    if isinstance(tree, dict):
        return {k: mask_tree(v, f"{key}.{k}" if key else str(k)) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [mask_tree(v, key) for v in tree]
    if is_secret(key) and tree not in (None, "") and not isinstance(tree, bool):
        remember(tree)
        return MASK
    return mask_value(tree)


def masked_fields(tree: Any, key: str = "") -> list[str]:
    """Dotted keys of ``tree`` whose value is the mask (what a rerun cannot know)."""
    if isinstance(tree, dict):
        return [f for k, v in tree.items() for f in masked_fields(v, f"{key}.{k}" if key else str(k))]
    if isinstance(tree, list):
        return [f for i, v in enumerate(tree) for f in masked_fields(v, f"{key}.{i}")]
    return [key] if isinstance(tree, str) and MASK in tree else []


def remember_environment(environ: dict[str, str] | None = None) -> None:
    """Remember the secrets of the environment: variables named like one, and URL user info."""
    for name, value in (os.environ if environ is None else environ).items():
        # The last word decides (MLFLOW_TRACKING_PASSWORD, HF_TOKEN): SSH_AUTH_SOCK holds a path, PWD a folder.
        if is_secret(name.rsplit("_", 1)[-1]):
            remember(value)
        if "://" in value or "=" in value:
            mask_text(value)  # remembers what it masks


def mask_exception(exc: BaseException) -> BaseException:
    """``exc`` (and the exceptions it chains) with secrets masked in its message, in place."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        with_masks = tuple(mask_text(a) if isinstance(a, str) else a for a in current.args)
        if with_masks != current.args or str(current) != mask_text(str(current)):
            with contextlib.suppress(AttributeError, TypeError):
                current.args = with_masks if any(isinstance(a, str) for a in current.args) else (
                    mask_text(str(current)),)
        current = current.__cause__ or current.__context__
    return exc


def masking_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` whose exceptions leave with their messages masked (what a flow's failed state keeps)."""

    @functools.wraps(function)
    def masked(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except BaseException as exc:
            mask_exception(exc)
            raise

    return masked


class MaskedStream(io.TextIOBase):
    """A text stream that masks secrets in what is written, then passes it on."""

    def __init__(self, inner: TextIO) -> None:
        super().__init__()
        self.inner = inner

    def write(self, text: str) -> int:
        try:
            self.inner.write(mask_text(text))
        except BrokenPipeError:
            self._reader_gone()
        return len(text)

    def flush(self) -> None:
        try:
            self.inner.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        """The reader of a pipe went away (``scribbles plugins --json | head``): the output ends there, the
        command does not (a run still finishes and records its results, and exits with its own code).
        The stream's descriptor now points at /dev/null, so later writes and the interpreter's final flush
        do not raise again (Python's advice for SIGPIPE, docs: signal, "Note on SIGPIPE")."""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.inner.fileno())
            os.close(devnull)

    def isatty(self) -> bool:
        return not self.inner.closed and self.inner.isatty()

    @property
    def closed(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.inner, "closed", False))

    def fileno(self) -> int:
        return self.inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _MaskRecords(logging.Filter):
    """Masks a log record's message (and traceback) before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            mask_exception(record.exc_info[1])
        return True


MASK_RECORDS = _MaskRecords()


def mask_output() -> None:
    """Mask secrets in everything this process writes to stdout, stderr and through logging handlers."""
    remember_environment()
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, MaskedStream):
            setattr(sys, name, MaskedStream(stream))
    mask_log_handlers()


def mask_log_handlers() -> None:
    """Put the masking filter on every logging handler there is now (call again after libraries add some)."""
    # A copy first: other threads (Prefect's, the tracker's) create loggers meanwhile, and iterating the
    # live dict then raises "dictionary changed size"; dict.copy is one step under the GIL.
    known = logging.Logger.manager.loggerDict.copy()
    loggers = [logging.getLogger()] + [logger for logger in known.values() if isinstance(logger, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if MASK_RECORDS not in handler.filters:
                handler.addFilter(MASK_RECORDS)
            stream = getattr(handler, "stream", None)
            for name in ("stdout", "stderr"):
                original = getattr(sys, f"__{name}__")
                if stream is original and isinstance(handler, logging.StreamHandler):
                    handler.setStream(getattr(sys, name))
