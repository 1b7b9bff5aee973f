"""End a child process when its parent ends, however the parent ended.

A server killed with SIGKILL (or by the out-of-memory killer) has no chance to stop its
children, and a child that only waits on a pipe may never see it close: a worker forked
from the server inherits the server's end of its own pipe and of the other workers'. So
each child the playground starts (validation workers, vLLM's engine core) calls
`end_with_parent` first thing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_S = 1.0


def _kernel_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent ends; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        # The process's own symbols, libc's among them (find_library would run ldconfig).
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signal.SIGKILL)


def end_with_parent(expected_parent: int | None = None, kernel: bool = True) -> None:
    """SIGKILL this process once its parent process is gone. Call it first thing in a child.

    `expected_parent`: the parent's pid where the caller knows it, so that a parent that
    died before this call is noticed too (this process is then already someone else's).

    The kernel's parent-death signal (`kernel`) is immediate and still works while this
    process holds the GIL in a long C call (a backtracking regex). But Linux watches the
    parent *thread* that started the child, not its process: where that thread ends before
    its process does (vLLM's engine core is started from the engine's loading thread), pass
    kernel=False and a thread checks the parent every POLL_S instead. The thread is also
    the fallback where the kernel cannot (not Linux).
    """
    parent = os.getppid()
    if expected_parent is not None and parent != expected_parent:
        os.kill(os.getpid(), signal.SIGKILL)
    if kernel and _kernel_signal():
        # The parent may have ended between getppid and prctl: then no signal comes.
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return
    threading.Thread(target=_watch, args=(parent,), name="parent-watch", daemon=True).start()
