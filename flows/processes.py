"""Other processes of this machine: whether one lives, and giving one a lower CPU priority.

Standard library only: the fold worker's start path (``fold_worker``) and ``resume`` both use it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def alive(pid: int) -> bool:
    """True when process ``pid`` exists on this machine (``kill(pid, 0)``); a number too large to be a
    pid is no process."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def lower_priority(pid: int, nice: int, process_nice: int | None = None) -> None:
    """Give process ``pid`` the CPU priority ``nice`` (0-19, higher is lower); for one that leads a session
    of its own (``start_new_session``), until ``restore_priority``. Never raised here, never fails.

    Linux with autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``, the default of most
    desktop and server kernels) shares the CPU fairly between sessions first; a process's own nice weighs
    only against the processes of its session. A process alone in its session took its session's full
    share whatever its nice: measured on 2 cores, a temporary Prefect server at nice 10 took 85% of a core
    beside a fold worker at nice 0, which got 75%. So the session's nice is lowered (``/proc/PID/autogroup``,
    see ``sched(7)``, "The autogroup feature"), which any user may raise and set back to 0 for a process of
    their own. Without autogroup, or for a process that shares its session (it competes inside it), the
    process's own nice is lowered instead, to ``process_nice`` (default ``nice``), which an unprivileged
    process cannot set back: pass a milder one.
    """
    session = _session_nice(pid)
    if session is not None:
        with contextlib.suppress(OSError):  # a session we may not change: its process's own nice below
            if session < nice:
                Path(f"/proc/{pid}/autogroup").write_text(str(nice))
            return
    with contextlib.suppress(OSError):
        wanted = nice if process_nice is None else process_nice
        os.setpriority(os.PRIO_PROCESS, pid, max(os.getpriority(os.PRIO_PROCESS, pid), wanted))


def restore_priority(pid: int) -> None:
    """Set the session nice of ``pid``'s session back to 0 when ``lower_priority`` lowered it: from here on
    the process is waited for, and at nice 19 beside busy processes it could take minutes to start."""
    if (_session_nice(pid) or 0) > 0:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/autogroup").write_text("0")


def _session_nice(pid: int) -> int | None:
    """The nice of the session that ``pid`` leads, or None when it leads none or autogroup does not apply.

    ``/proc/PID/autogroup`` reads "/autogroup-42 nice 0"; it is empty for a process in the kernel's default
    group (autogroup off, or a container's processes, as on a CI machine) and absent on kernels built without
    it.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        if os.getsid(pid) == pid:
            return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])
    return None
