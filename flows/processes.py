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


def lower_priority(pid: int, nice: int) -> None:
    """Give process ``pid`` the CPU priority ``nice`` (0-19, higher is lower), unless it is lower already.

    Linux with autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``, the default of most
    desktop and server kernels) shares the CPU fairly between sessions first, and a process's own nice
    weighs only against the processes of its session. A process started in a session of its own
    (``start_new_session``) then took its session's full share whatever its nice: measured on 2 cores,
    a temporary Prefect server at nice 10 still took 85% of a core beside a fold worker at nice 0, which
    got 75%. So the session's nice (``/proc/PID/autogroup``, which any user may raise for a process of
    their own; see ``sched(7)``, "The autogroup feature") is lowered too. Only for a process that leads a
    session of its own: a session's nice applies to every process in it. Best effort: never fails.
    """
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, max(os.getpriority(os.PRIO_PROCESS, pid), nice))
    with contextlib.suppress(OSError, ValueError, IndexError):
        group = Path(f"/proc/{pid}/autogroup")  # "/autogroup-42 nice 0"
        if os.getsid(pid) == pid and int(group.read_text().split()[-1]) < nice:
            group.write_text(str(nice))
