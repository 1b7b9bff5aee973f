"""Run pure-Python work that may not end (an Earley parse, a backtracking regex, building a
parser) in a worker process that is killed past a time limit.

A thread cannot be stopped and holds the GIL against the server's event loop, so work
whose cost a user's input decides runs here: a few long-lived worker processes, each
doing one call at a time. Past its limit a worker is killed and replaced; the caller gets
`WorkTimeout`. Measured on the 2-core machine: a call costs ~0.3 ms over running it in
place once a worker is warm; a fresh worker starts in ~5 ms (forked from the fork server,
which has the playground's modules preloaded).

Not pebble's ProcessPool: docs/judging.md says why.
"""

from __future__ import annotations

import asyncio
import collections
import os
import pickle
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from playground.errors import WorkerDied, WorkersBusy, WorkTimeout
from playground.judging.worker_process import Worker, in_own_thread


def _cores() -> int:
    """The cores this process may use (a container's or taskset's, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# Half the cores, at least 2 and at most 8: on the H100's 16 cores two workers queued the
# validations of 128 outputs cut at max tokens behind each other at the end of every batch.
MAX_WORKERS = max(2, min(8, _cores() // 2))
# How long a call waits for a busy worker before giving up (each call ahead is bounded).
WORKER_WAIT_S = 120.0
POLL_S = 0.05
# How long a doctor's tool waits for its share of the workers (someone typing in the JSON
# tab while another user's coverage runs), before "busy, try again".
SIDE_WAIT_S = 10.0
_idle: queue.LifoQueue[Worker] = queue.LifoQueue()
_lock = threading.Lock()
_started = 0
_alive: set[Worker] = set()  # idle and busy
_closed = False  # set by stop_all(close=True): no worker starts any more


def _acquire(timeout: float) -> Worker:
    global _started
    deadline = time.monotonic() + timeout
    while True:
        worker = _idle_worker()
        if worker is not None:
            return worker
        with _lock:
            if _closed:
                raise WorkerDied("the server is stopping")
            reserved = _started < MAX_WORKERS
            if reserved:
                _started += 1
        if reserved:  # forked outside the lock: the event loop takes it too (acall)
            return _start_in_reserved_slot()
        left = deadline - time.monotonic()
        if left <= 0:
            raise WorkersBusy(f"every worker stayed busy for {timeout:g} s (other "
                              "requests' work)")
        # Polled, not one long wait: a worker killed past its limit frees a slot without
        # coming back to the idle queue, and that slot must be taken at once.
        try:
            worker = _idle.get(timeout=min(left, POLL_S))
        except queue.Empty:
            continue
        if worker in _alive:
            return worker


def _idle_worker() -> Worker | None:
    """An idle live worker now, or None (one stop_all killed while idle is dropped)."""
    while True:
        try:
            worker = _idle.get_nowait()
        except queue.Empty:
            return None
        if worker in _alive:
            return worker


def _start_in_reserved_slot() -> Worker:
    """A new worker in a slot the caller reserved (`_started` counts it already); the slot
    is given back if it cannot start."""
    global _started
    try:
        worker = Worker()
    except BaseException:
        with _lock:
            _started -= 1
        _release(None)
        raise
    with _lock:
        _alive.add(worker)
        closed = _closed
    if closed:  # stop_all(close=True) came while it started
        _retire(worker)
        raise WorkerDied("the server is stopping")
    return worker


def _retire(worker: Worker) -> None:
    global _started
    worker.kill()
    with _lock:
        if worker in _alive:
            _alive.discard(worker)
            _started -= 1
    _release(None)  # a slot is free: a waiting coroutine starts a worker in it


# Coroutines waiting for a worker (acall), woken in turn on their own loops. A wake is only
# a signal: the worker itself always goes to the idle queue, so a wake that comes too late
# (its waiter timed out, or its loop stopped) loses no worker.
_waiters: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = \
    collections.deque()


def _release(worker: Worker | None) -> None:
    """A worker back from a call (None: a slot came free): idle again, one waiter woken."""
    if worker is not None:
        _idle.put(worker)
    _wake_one()


def _wake_one() -> None:
    while True:
        with _lock:
            if not _waiters:
                return
            loop, waiter = _waiters.popleft()
        try:
            loop.call_soon_threadsafe(_wake, waiter)
            return
        except RuntimeError:  # that loop has closed
            continue


def _wake(waiter: asyncio.Future[None]) -> None:
    if waiter.done():  # it gave up meanwhile: the signal goes on
        _wake_one()
    else:
        waiter.set_result(None)


_side_calls = 0


def side_call(fn: Callable[..., Any], *args: Any, timeout: float,
              setup: Callable[[], Any] | None = None) -> Any:
    """`call` for tools beside the runs (the doctor's test strings and coverage): they
    never hold the last worker, so runs' constraints and verdicts always find one. Past
    that share, a short wait (SIDE_WAIT_S), then WorkersBusy."""
    global _side_calls
    deadline = time.monotonic() + SIDE_WAIT_S
    while True:
        with _lock:
            if _side_calls < max(1, MAX_WORKERS - 1):
                _side_calls += 1
                break
        if time.monotonic() > deadline:
            raise WorkersBusy("every worker for the doctor's tools is busy with other "
                              "users' checks; try again in a moment")
        time.sleep(POLL_S)
    try:
        return call(fn, *args, timeout=timeout, setup=setup)
    finally:
        with _lock:
            _side_calls -= 1


def resize(most: int) -> None:
    """At most `most` workers from now on; idle ones past that are stopped now (a suite
    that grew the pool to its jobs gives the memory back before generating)."""
    global MAX_WORKERS
    MAX_WORKERS = most
    while _started > most:
        try:
            _retire(_idle.get_nowait())
        except queue.Empty:
            return


def stop_all(close: bool = False) -> None:
    """Kill every worker, busy ones too: their callers get WorkerDied at once (an
    interrupted suite stops now, not when each schema reaches its time limit). With
    `close` (a stopping server) no worker starts after: later calls get WorkerDied too,
    rather than a fresh worker each that the stop would have to end again."""
    global _closed
    with _lock:
        _closed = _closed or close
        workers = list(_alive)
    for worker in workers:
        _retire(worker)


def call(fn: Callable[..., Any], *args: Any, timeout: float,
         setup: Callable[[], Any] | None = None) -> Any:
    """`fn(*args)` in a worker process (fn and args picklable), at most `timeout` seconds
    of work. Raises WorkTimeout past it, the work's own exception where it raised one,
    WorkerDied where the worker was lost.

    The wait for a free worker is not the work's time (on the H100, 42 outputs judged at
    once after a start all came back "unjudged" when it was): it is bounded on its own,
    since every call ahead is. `setup` (e.g. a slow import, once per worker) runs before,
    not counted in `timeout` either."""
    message = pickle.dumps((setup, fn, args))  # an unpicklable argument fails here
    worker = _acquire(max(timeout, WORKER_WAIT_S))
    try:
        ok, value = worker.call(message, timeout, setup is not None)
    except WorkTimeout:  # a TimeoutError, so an OSError: before the next
        _retire(worker)
        raise
    except (EOFError, OSError) as exc:
        _retire(worker)
        raise WorkerDied(f"the worker process ended ({type(exc).__name__})") from None
    except BaseException:  # past its limit, or interrupted (Ctrl-C) with its reply unread
        _retire(worker)
        raise
    _release(worker)
    if not ok:
        raise value
    return value


async def acall(fn: Callable[..., Any], *args: Any, timeout: float,
                setup: Callable[[], Any] | None = None) -> Any:
    """`call` from async code, the worker's socket read by the event loop itself: a thread
    per call woke for the GIL at each step while the loop streamed 128 requests (on the
    H200 a burst's verdicts waited ~0.1 s each, for a few ms of work). The loop sends a
    small message and reads ready replies (`Worker.acall`); a worker's start (a fork) and
    a timeout's kill run in threads of their own."""
    message = pickle.dumps((setup, fn, args))  # an unpicklable argument fails here
    worker = await _worker(max(timeout, WORKER_WAIT_S))
    settled = False  # the worker is back or being retired
    try:
        ok, value = await worker.acall(message, timeout, setup is not None)
        settled = True
    except WorkTimeout:  # a TimeoutError, so an OSError: before the next
        settled = True
        _retire_later(worker)
        raise
    except (EOFError, OSError) as exc:
        settled = True
        _retire_later(worker)
        raise WorkerDied(f"the worker process ended ({type(exc).__name__})") from None
    finally:
        if not settled:  # cancelled (or interrupted) mid-call: its reply unread
            _retire_later(worker)
    _release(worker)
    if not ok:
        raise value
    return value


# A waiting coroutine looks at the pool again this often even without a wake.
_WAKE_CHECK_S = 0.25


def _retire_later(worker: Worker) -> None:
    """`_retire` (a kill and a join) in a thread of its own: never in the loop, and never
    behind asyncio's pool, which other requests' work fills."""
    in_own_thread(_retire, "retire", worker)


async def _worker(timeout: float) -> Worker:
    """An idle worker; else a new one in a free slot; else the next one to come back.
    WorkersBusy past `timeout`. Never waits in a thread: 128 verdicts at once held every
    thread of asyncio's pool, and other requests' prompt encodings queued behind them."""
    global _started
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    while True:
        worker = _idle_worker()
        if worker is not None:
            return worker
        waiter: asyncio.Future[None] = loop.create_future()
        left = deadline - time.monotonic()
        closed = reserved = queued = False
        with _lock:
            if _closed:
                closed = True
            elif _started < MAX_WORKERS:
                _started += 1
                reserved = True
            elif _idle.empty() and left > 0:  # under the lock: a release after this wakes us
                _waiters.append((loop, waiter))
                queued = True
        if closed:
            _wake_one()  # every waiter hears it, one after another
            raise WorkerDied("the server is stopping")
        if reserved:
            return await _new_worker()
        if not queued:
            if left <= 0 and _idle.empty():
                raise WorkersBusy(f"every worker stayed busy for {timeout:g} s (other "
                                  "requests' work)")
            continue  # a worker came back between the look and the lock
        try:
            await asyncio.wait_for(waiter, min(left, _WAKE_CHECK_S))
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                _wake_one()  # woken just as its caller went away: the next one goes
            raise
        finally:
            with _lock:
                if (loop, waiter) in _waiters:
                    _waiters.remove((loop, waiter))


async def _new_worker() -> Worker:
    """A worker started in a slot the caller reserved, in a thread of its own; one that
    starts after its caller was cancelled (or its loop ended) goes back to the pool."""
    global _started
    try:
        started = in_own_thread(_start_in_reserved_slot, "start")
    except BaseException:  # no thread: the slot is given back
        with _lock:
            _started -= 1
        _release(None)
        raise
    try:
        return await asyncio.wrap_future(started)
    except BaseException:  # cancelled, or closed with its loop (GeneratorExit)
        started.add_done_callback(
            lambda done: None if done.exception() else _release(done.result()))
        raise


def warm_up() -> None:
    """Start a worker now (a server calls this at start, so no request pays for it)."""
    call(os.getpid, timeout=60)
