"""One worker process: the loop it serves calls in, and the parent's handle on it
(playground.judging.workers keeps a pool of them)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
from typing import Any

from playground.core.parent_death import end_with_parent
from playground.errors import WorkTimeout

# Imported once in the fork server, so every worker starts with them loaded.
PRELOAD = ["playground.judging.validation"]


# A setup step (imports: xgrammar takes ~5 s on 2 cores) may take this long, once a worker.
SETUP_TIMEOUT_S = 120.0
STARTED = "started"


def _serve(conn: multiprocessing.connection.Connection, forked_from: int | None) -> None:
    # A worker never outlives the process that uses it: after a SIGTERM of the server, one
    # forked from it sat orphaned at 650 MB (it holds the server's end of its own pipe, so
    # it never reads EOF). A fork server's worker ends with the fork server, which ends
    # with the server once no worker holds its "alive" pipe. The kernel's signal is safe
    # here: both parents start workers from a thread that lasts (the fork server's one
    # thread; a process's only thread, where workers are forked).
    end_with_parent(forked_from)
    if forked_from is None:
        _leave_fork_server()
    # Its owner stops it (or the line above does): a Ctrl-C at the terminal, which reaches
    # the whole process group, or a handler inherited from a forked server must not.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        try:
            setup, fn, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if setup is not None:
                setup()
            conn.send(STARTED)
            reply: tuple[bool, Any] = (True, fn(*args))
        except BaseException as exc:  # sent back and raised in the caller
            reply = (False, _portable(exc))
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable result
            conn.send((False, RuntimeError(f"{type(exc).__name__}: {exc}")))


def _leave_fork_server() -> None:
    """Close this worker's copy of the fork server's "alive" pipe (multiprocessing hands
    one to each child it forks). The fork server ends once every copy is closed: with the
    workers holding theirs, a server killed outright left the fork server, and so the
    workers' parent-death signal, waiting on the slowest worker's work, which nothing
    limits any more (7.6 s for a setup's imports; no end for a backtracking regex)."""
    from multiprocessing import forkserver

    server = forkserver._forkserver  # type: ignore[attr-defined]
    alive = getattr(server, "_forkserver_alive_fd", None)
    if alive is not None:
        os.close(alive)
        server._forkserver_alive_fd = None


def _portable(exc: BaseException) -> BaseException:
    """The exception itself where it survives pickling, else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc.with_traceback(None)
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class Worker:
    def __init__(self) -> None:
        # fork is safe and fastest while the process has one thread (the CLI); a server
        # has threads, so its workers come from a clean fork server.
        method = "fork" if threading.active_count() == 1 else "forkserver"
        context = multiprocessing.get_context(method)
        if method == "forkserver":
            context.set_forkserver_preload(PRELOAD)
        self.conn, child = context.Pipe()
        forked_from = os.getpid() if method == "fork" else None
        self.process = context.Process(target=_serve, args=(child, forked_from), daemon=True,
                                       name="playground-worker")
        self.process.start()
        child.close()
        self._kill_lock = threading.Lock()

    def call(self, message: bytes, timeout: float, setup: bool) -> tuple[bool, Any]:
        """(True, result) or (False, the exception it raised) for a pickled (setup, fn,
        args); OSError/EOFError here are the socket's, meaning the worker is gone. A setup
        runs first, outside the limit."""
        self.conn.send_bytes(message)
        if not self.conn.poll(SETUP_TIMEOUT_S if setup else timeout):
            raise WorkTimeout(f"still running after {timeout:g} s")
        started = self.conn.recv()
        if started != STARTED:  # setup failed: its error
            return started
        if not self.conn.poll(timeout):
            raise WorkTimeout(f"still running after {timeout:g} s")
        return self.conn.recv()

    def kill(self) -> None:
        # stop_all kills a busy worker from another thread while its caller, woken by the
        # closed pipe, retires it too: two closes of one pipe raced, and the second's
        # EBADF reached the caller as a bare OSError instead of WorkerDied.
        with self._kill_lock:
            self.process.kill()
            self.process.join(timeout=5)
            self.conn.close()
