"""A Prefect server (`prefect server start`) run by scribbles on loopback, for schedules without one.

Prefect's temporary server has no scheduler: a deployment's schedule needs a real server. When no
``PREFECT_API_URL`` is configured, ``scribbles serve`` starts one for as long as it serves; its
database stays in PREFECT_HOME, so the Prefect UI shows the schedule and every run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from scribbles.core import ScribblesError

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


def healthy(url: str) -> bool:
    """True when the Prefect API at ``url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
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
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
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
