"""One worker process: the loop it serves calls in, and the parent's handle on it
(playground.judging.workers keeps a pool of them)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
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

    async def acall(self, message: bytes, timeout: float, setup: bool) -> tuple[bool, Any]:
        """`call` on the event loop: it sends, then reads the socket once it has data."""
        loop = asyncio.get_running_loop()
        if len(message) > _SOCKET_BYTES:  # the write waits on the worker's reads
            await asyncio.wrap_future(in_own_thread(self.conn.send_bytes, "send", message))
        else:
            self.conn.send_bytes(message)
        if not await _readable(loop, self.conn, SETUP_TIMEOUT_S if setup else timeout):
            raise WorkTimeout(f"still running after {timeout:g} s")
        started = self.conn.recv()
        if started != STARTED:  # setup failed: its error
            return started
        if not await _readable(loop, self.conn, timeout):  # the work's time, setup done
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


# A message up to this size is written at once, without the worker reading (a Unix
# socketpair's default buffer is larger; the length header is counted in the margin).
_SOCKET_BYTES = 60_000
# A reader looks again this often whether its socket was closed under it.
_CLOSED_CHECK_S = 0.25


async def _readable(loop: asyncio.AbstractEventLoop,
                    conn: multiprocessing.connection.Connection, timeout: float) -> bool:
    """Whether `conn` has data within `timeout` seconds, waited for by the loop. Looked at
    again every _CLOSED_CHECK_S: stop_all closes a busy worker's socket from another thread,
    and an EOF that comes while the loop is busy is then never seen."""
    deadline = time.monotonic() + timeout
    fd = conn.fileno()
    while True:
        if conn.closed:
            raise EOFError("the worker was stopped")
        if conn.poll(0):
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready = loop.create_future()
        loop.add_reader(fd, _set_ready, ready)
        try:
            await asyncio.wait_for(ready, min(left, _CLOSED_CHECK_S))
        except TimeoutError:
            pass
        finally:
            loop.remove_reader(fd)


def _set_ready(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def in_own_thread(fn: Callable[..., Any], name: str, *args: Any) -> concurrent.futures.Future[Any]:
    """`fn(*args)` in a daemon thread of its own; its future is running, so the asyncio
    side that waits on it cannot cancel it (the result is always delivered)."""
    done: concurrent.futures.Future[Any] = concurrent.futures.Future()
    done.set_running_or_notify_cancel()

    def run() -> None:
        try:
            done.set_result(fn(*args))
        except BaseException as exc:
            done.set_exception(exc)

    threading.Thread(target=run, daemon=True, name=f"playground-worker-{name}").start()
    return done
