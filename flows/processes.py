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
    group = Path(f"/proc/{pid}/autogroup")  # "/autogroup-42 nice 0"
    with contextlib.suppress(OSError, ValueError, IndexError):
        if os.getsid(pid) == pid:
            if int(group.read_text().split()[-1]) < nice:
                group.write_text(str(nice))
            return
    with contextlib.suppress(OSError):
        wanted = nice if process_nice is None else process_nice
        os.setpriority(os.PRIO_PROCESS, pid, max(os.getpriority(os.PRIO_PROCESS, pid), wanted))


def restore_priority(pid: int) -> None:
    """Set the session nice of ``pid``'s session back to 0 when ``lower_priority`` lowered it: from here on
    the process is waited for, and at nice 19 beside busy processes it could take minutes to start."""
    group = Path(f"/proc/{pid}/autogroup")
    with contextlib.suppress(OSError, ValueError, IndexError):
        if os.getsid(pid) == pid and int(group.read_text().split()[-1]) > 0:
            group.write_text("0")
