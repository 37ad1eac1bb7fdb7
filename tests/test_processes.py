"""flows/processes.py on real processes: liveness, and a lower CPU priority that autogroup scheduling honours."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from scribbles.flows.processes import alive, lower_priority, restore_priority


def _autogroup(pid: int) -> str | None:
    """The session's nice as /proc shows it; None without autogroup (no file, or an empty one: a process in
    the kernel's default group, as on CI's machine)."""
    path = Path(f"/proc/{pid}/autogroup")
    words = path.read_text().split() if path.exists() else []
    return words[-1] if words else None


def test_alive_tells_a_live_process_from_a_gone_one() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not alive(child.pid)
    assert not alive(2**40)  # no process could have it (os.kill raises OverflowError)
    assert alive(os.getpid())


def test_lower_priority_lowers_a_session_until_restored_and_leaves_a_shared_session_alone() -> None:
    own = subprocess.Popen(["sleep", "30"], start_new_session=True)
    shared = subprocess.Popen(["sleep", "30"])
    ours = _autogroup(os.getpid())
    try:
        has_session = _autogroup(own.pid) is not None
        lower_priority(own.pid, 19, process_nice=10)
        lower_priority(shared.pid, 7)
        lower_priority(own.pid, 5)  # never raised here
        if not has_session:  # no autogroup scheduling: the process's own nice, which cannot be set back
            assert os.getpriority(os.PRIO_PROCESS, own.pid) == 10
            assert os.getpriority(os.PRIO_PROCESS, shared.pid) == 7
            return
        assert _autogroup(own.pid) == "19"
        assert os.getpriority(os.PRIO_PROCESS, own.pid) == 0  # the session's nice only: it can be set back
        assert _autogroup(shared.pid) == ours == _autogroup(os.getpid())  # this session is not changed
        assert os.getpriority(os.PRIO_PROCESS, shared.pid) == 7  # its own nice: it competes within this session
        restore_priority(own.pid)
        assert _autogroup(own.pid) == "0"
    finally:
        for child in (own, shared):
            child.kill()
            child.wait()
