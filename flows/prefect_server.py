"""Prefect servers run by scribbles on loopback: one for schedules, and each run's temporary API.

Prefect's temporary server has no scheduler: a deployment's schedule needs a real server. When no
``PREFECT_API_URL`` is configured, ``scribbles serve`` starts one for as long as it serves; its
database stays in PREFECT_HOME, so the Prefect UI shows the schedule and every run.

``temporary_api`` replaces the temporary server Prefect would start by itself for ``run``, ``rerun``
and ``resume``, because Prefect's (``SubprocessASGIServer``) picks a port by trying one and letting it
go: two runs starting together could pick the same, the second then talked to the first one's server
and failed when that stopped; and after a SIGKILL its uvicorn lived on. Here the port is bound and
listening before the server process starts (it inherits the socket: no other process can take the
port), the server runs in a session of its own (Ctrl-C to the terminal's process group reaches only
scribbles, which still needs the API to record how its flow ended), and it watches its parent: when
scribbles ends, however it ends (SIGKILL included), the server exits within a second.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from scribbles.core import BadInput, ScribblesError, stops_deferred

from .processes import restore_priority

DEFAULT_PORT = 4200


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when nothing listens there on 127.0.0.1, else a free port the system picks."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


def healthy(url: str, timeout: float = 2.0) -> bool:
    """True when the Prefect API at ``url`` answers its health check within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def local_server(port: int | None = None, log: Path | None = None, timeout: float = 180.0,
                 env: dict[str, str] | None = None) -> Iterator[str]:
    """Run `prefect server start` on 127.0.0.1 for the block; yields its API URL (``.../api``)."""
    port = free_port(port or DEFAULT_PORT)
    url = f"http://127.0.0.1:{port}/api"
    log = log or Path(".scribbles") / "prefect-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_API_URL": url,
                 **(env or {})}
    child_env.pop("PREFECT_API_URL", None)
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            tied_to_this_process(command),
            stdout=out, stderr=subprocess.STDOUT, env=child_env, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while not healthy(url):
            if process.poll() is not None:
                raise ScribblesError(f"the Prefect server exited with code {process.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise ScribblesError(f"the Prefect server did not answer on {url} within {timeout:.0f} s; see {log}")
            time.sleep(0.5)
        yield url
    finally:
        stop(process)


def tied_to_this_process(command: list[str]) -> list[str]:
    """``command`` run through this module's ``exec`` trampoline: it gets SIGTERM when this process ends,
    however it ends (SIGKILL included; Linux's PDEATHSIG)."""
    return [sys.executable, "-m", __name__, "exec", str(os.getpid()), *command]


#: Settings Prefect's own temporary server runs with: no UI, an ephemeral, final server.
EPHEMERAL_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


class Starting:
    """A temporary Prefect server started ahead of its use (``start_server``), on a port it holds.

    Its output goes to a file in the system's temporary folder, appended to the project's log when it is
    stopped with one (``stop(log)``): a command that ends in bad input before the server is used leaves
    nothing in the project.
    """

    def __init__(self) -> None:
        # Stops are held while the process and its thread start, then raised here, where the server is
        # stopped: a Ctrl-C cannot leave a server that no one holds (it outlived the command by a second,
        # and its output file stayed).
        try:
            with stops_deferred():
                self._start()
        except BaseException:
            if getattr(self, "process", None) is not None:
                self.stop()
            raise

    def _start(self) -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))  # the port is ours from here on: nothing else can bind it
        listener.listen(128)
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}/api"
        # Prefect is not imported here (a second of imports before the server could start): the server
        # reads the same environment, profile and settings files itself, in the same folder.
        env = {**os.environ, **EPHEMERAL_ENV}
        env.pop("PREFECT_API_URL", None)
        handle, name = tempfile.mkstemp(prefix="scribbles-prefect-server-", suffix=".log")
        self.output = Path(name)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, "serve", str(listener.fileno()), str(os.getpid())],
                stdout=handle, stderr=subprocess.STDOUT, env=env, pass_fds=(listener.fileno(),),
                start_new_session=True,
            )
        except BaseException:
            self.output.unlink(missing_ok=True)
            raise
        finally:
            os.close(handle)
            listener.close()  # the server holds the port now
        threading.Thread(target=_warm, args=(self.process, self.url), daemon=True, name="warm-prefect-server").start()

    def stop(self, log: Path | None = None) -> None:
        """Stop the server (see ``stop``) and append its output to ``log``; again, nothing happens."""
        stop(self.process, grace=5.0)
        if log is not None and self.output.exists() and self.output.stat().st_size:  # nothing said: no log made
            # A log that cannot be written (a read-only project) must not hide how the command ended.
            with contextlib.suppress(OSError):
                log.parent.mkdir(parents=True, exist_ok=True)
                with open(log, "ab") as out, open(self.output, "rb") as source:
                    shutil.copyfileobj(source, out)
        self.output.unlink(missing_ok=True)


def _warm(process: subprocess.Popen[bytes], url: str) -> None:
    """Ask the server for its version once it answers: its first API request takes about half a second
    (``/health`` does not do that work), which is then spent while the run still checks and imports,
    not in the flow's first call. Waits, never fails: the run's own wait reports a server that does not start.
    """
    while process.poll() is None:
        if healthy(url, timeout=1.0):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}/admin/version", timeout=60).close()
            return
        time.sleep(0.2)


def start_server() -> Starting | None:
    """A temporary Prefect server starting now, or None when ``PREFECT_API_URL`` names one to use.

    ``scribbles run`` starts it as soon as its config parses, so that the server's start (about 4 s of
    its own imports) runs beside the command's checks and imports; stop it (``Starting.stop``) on every
    way out, or hand it to ``temporary_api``, which does. Prefect is not imported for this (a second):
    until it is, the environment's ``PREFECT_API_URL`` (where ``scribbles.toml`` puts it too) decides,
    and ``temporary_api`` stops the server unused when a Prefect profile names one.
    """
    if "prefect.settings" in sys.modules:  # imported already (a test, say): its settings decide, at no cost
        from prefect.settings import PREFECT_API_URL

        return None if PREFECT_API_URL.value() else Starting()
    return None if os.environ.get("PREFECT_API_URL", "").strip() else Starting()


@contextlib.contextmanager
def started_early() -> Iterator[Starting | None]:
    """``start_server`` now, for a block that checks its input before it calls ``orchestrated(started=...)``:
    the server's start (seconds of imports, in a process of its own) runs beside those checks. The
    server is stopped on every way out, bad input found in the block included (nothing is left)."""
    server = start_server()
    try:
        yield server
    finally:
        if server is not None:
            server.stop()  # nothing to do when orchestrated stopped it already


@contextlib.contextmanager
def temporary_api(log: Path | None = None, prepare: Callable[[], None] | None = None,
                  started: Starting | None = None) -> Iterator[subprocess.Popen[bytes] | None]:
    """A Prefect API for the block: ``PREFECT_API_URL`` when set, else a temporary server of this process
    (``started``, when the caller started it ahead, see ``start_server``).

    Yields the server process (None when a configured server is used). Prefect's settings and the
    environment (so that worker processes inherit it) point at the server inside the block.
    ``prepare`` (imports, a store made ready) runs while the temporary server starts: its seconds
    overlap the server's instead of adding up. Whatever it raises stops the server before it
    propagates. The server's output is appended to ``log`` (``.scribbles/prefect-server.log``) when
    it stops.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_LOGGING_TO_API_ENABLED,
        temporary_settings,
    )

    log = log or Path(".scribbles") / "prefect-server.log"
    configured = PREFECT_API_URL.value()
    if configured and started is not None:
        started.stop()  # started ahead, before a profile's PREFECT_API_URL could be read: not needed
        started = None
    if configured:
        # Prefect's client would retry an absent server for about a minute per request.
        # A shared server busy with a team's runs may take seconds to answer: three tries of 5 s each.
        if not any(healthy(str(configured).rstrip("/"), timeout=5.0) for _ in range(3)):
            raise BadInput(f"PREFECT_API_URL: no Prefect API answers at {configured}; start that server, or unset "
                           "PREFECT_API_URL and each run starts a temporary one")
        if prepare is not None:
            prepare()
        yield None
        return
    previous = {key: os.environ.get(key) for key in ("PREFECT_API_URL", "PREFECT_LOGGING_TO_API_ENABLED")}
    server = started or Starting()
    try:
        if prepare is not None:
            prepare()
        restore_priority(server.process.pid)  # a fold worker's run lowered it while the command checked
        _wait_healthy(server.process, server.url, log,
                      float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 120)))
        os.environ["PREFECT_API_URL"] = server.url
        # Logs stay in the terminal: a server that ends with the run is no place to read them later,
        # and a lost one would make every log record print "Error logging to API".
        os.environ["PREFECT_LOGGING_TO_API_ENABLED"] = "false"
        # No flow run heartbeats: they tell a lasting server that a run's process died, and this server
        # dies with the run. (Each flow's end waited up to a second for the heartbeat thread's sleep.)
        with temporary_settings(updates={PREFECT_API_URL: server.url, PREFECT_LOGGING_TO_API_ENABLED: False,
                                         PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield server.process
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop(log)


class ServerLost(ScribblesError):
    """The Prefect API went away during the run."""


@contextlib.contextmanager
def orchestrated(prepare: Callable[[], None] | None = None, started: Starting | None = None) -> Iterator[None]:
    """A Prefect API for the flows run in the block (``temporary_api``, with its ``prepare`` and
    ``started``); losing it is one ScribblesError.

    A temporary server that dies mid-run is noticed within a second: the run is stopped there and then
    (its open MLflow runs end FAILED), and Prefect's client stops retrying a server that will not come
    back (it would wait about a minute per request). A configured server that goes away surfaces as a
    connection error; either way the command prints one line naming the server.
    """
    import httpx

    with temporary_api(prepare=prepare, started=started) as server:
        lost = threading.Event()
        done = threading.Event()
        previous = _watch(server, lost, done) if server is not None else None
        try:
            yield
        except Exception as exc:
            if not lost.is_set() and not isinstance(exc, httpx.TransportError):
                from .failures import as_failure

                failure = as_failure(exc)
                if failure is None:
                    raise
                raise failure from None
            where = f"the temporary Prefect server (pid {server.pid}, exit code {server.returncode})" \
                if lost.is_set() and server is not None else \
                f"the Prefect API at {os.environ.get('PREFECT_API_URL', '')} ({type(exc).__name__})"
            raise ServerLost(f"lost {where} during the run; its runs ended FAILED; "
                             "finish them with `scribbles resume RUN_ID`") from None
        finally:
            done.set()
            if previous is not None:
                signal.signal(signal.SIGUSR1, previous)


def _watch(server: subprocess.Popen[bytes], lost: threading.Event, done: threading.Event) -> Any:
    """Watch ``server`` from a thread; when it dies first, stop the main thread with ServerLost.

    Returns the SIGUSR1 handler it replaced (None outside the main thread).
    """
    from prefect.settings import get_current_settings

    settings = get_current_settings()  # this block's own (temporary_api's), shared with the main thread
    main = threading.main_thread().ident

    def raise_lost(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        raise ServerLost("the temporary Prefect server stopped")

    try:
        previous = signal.signal(signal.SIGUSR1, raise_lost)
    except ValueError:  # not the main thread: the loss still ends the run, at its next API call
        main = previous = None

    def watch() -> None:
        while not done.wait(0.5):
            if server.poll() is not None:
                lost.set()
                settings.client.max_retries = 0  # nothing to retry: the server is gone for good
                if main is not None and not done.is_set():
                    signal.pthread_kill(main, signal.SIGUSR1)
                return

    threading.Thread(target=watch, daemon=True, name="watch-prefect-server").start()
    return previous


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    """Return once the server at ``url`` answers; ScribblesError when it exits or stays silent."""
    deadline = time.monotonic() + timeout
    while not healthy(url):
        if process.poll() is not None:
            raise ScribblesError(f"the temporary Prefect server exited with code {process.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise ScribblesError(f"the temporary Prefect server did not answer on {url} within {timeout:.0f} s; "
                                 f"see {log}, or raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")
        time.sleep(0.2)


def _serve_on(fd: int, parent: int) -> None:
    """The temporary server's own process: Prefect's API on the inherited socket ``fd`` while ``parent`` lives."""
    import threading

    _die_with(parent)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="watch-parent").start()
    import uvicorn

    config = uvicorn.Config("prefect.server.api.server:create_app", factory=True, log_level="error", lifespan="on")
    # The app's imports (seconds) before uvicorn's signal handlers: a SIGTERM then ends the process at once.
    # Under uvicorn's, it only asked for a shutdown after the start, and a run stopped by bad input or
    # Ctrl-C during its checks waited for the whole start (about 10 s on a busy machine).
    # No garbage collection over those imports (about 2,000 modules whose objects live as long as the
    # server): its full passes went over them again and again. Frozen after, they stay out of later
    # passes. The server answered about 0.6 s sooner (3.7 s against 4.4 s, median of 4 each).
    gc.disable()
    try:
        _skip_collections()
        config.load()
    finally:
        gc.freeze()
        gc.enable()
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])


def _skip_collections() -> None:
    """Have this server load no Prefect integration packages (``prefect.collections`` entry points).

    Prefect's server imports every installed one at its start to register their block types; the only
    one here, prefect-dask (for ``train.dask_address``), has no block types and took most of the start's
    last part (0.3-0.5 s: dask and distributed). The temporary server serves scribbles' own flows, which
    use no blocks. Prefect keeps the loaded collections in a module global (private; a Prefect without it
    ignores this and loads them).
    """
    with contextlib.suppress(ImportError):
        from prefect._internal.plugins import collections

        collections._collections = {}


def _die_with(parent: int) -> None:
    """On Linux, have the kernel send SIGTERM to this process when its parent ends (prctl PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent ended before the request above took effect
        os._exit(0)


def _watch_parent(parent: int) -> None:
    """Exit when the parent is gone (re-parented: the portable check, and a second line behind prctl)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def stop(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after ``grace`` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _exec_with(parent: int, command: list[str]) -> None:
    """Become ``command``, which the kernel will stop when ``parent`` ends (PDEATHSIG survives exec)."""
    _die_with(parent)
    os.execv(command[0], command)


if __name__ == "__main__":
    # `serve FD PARENT`: the temporary API on an inherited socket; `exec PARENT COMMAND...`: a server command.
    if sys.argv[1] == "serve":
        _serve_on(int(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1] == "exec":
        _exec_with(int(sys.argv[2]), sys.argv[3:])
