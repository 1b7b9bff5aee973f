"""How a served app ends: on SIGTERM as on Ctrl-C, with everything it started, in bounded
time.

Without a handler SIGTERM ended the server on the spot (exit -15) and nothing stopped its
children: vLLM's engine core kept the GPU's memory. Now SIGTERM and SIGINT raise
KeyboardInterrupt in the main thread, which waits in `wait` once the app is up; `serve`
then calls `stop` and `exit_now`. A second signal while stopping exits at once.

A server killed outright (SIGKILL) runs none of this: its children end by themselves
(`playground.core.parent_death`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from playground.engines.base import Engine
from playground.judging import workers

log = logging.getLogger(__name__)

# The engine's shutdown (vLLM waits up to 5 s for its engine core, then kills it) and the
# workers' together; then a child still alive CHILDREN_S after SIGTERM is killed.
STOP_S = 15.0
CHILDREN_S = 5.0
# An error on the way out leaves the exit to the interpreter; past this it exits anyway.
EXIT_S = 5.0

_stopping = threading.Event()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if _stopping.is_set():
        os._exit(128 + signum)
    _stopping.set()
    log.info("%s received: stopping", signal.Signals(signum).name)
    raise KeyboardInterrupt


def handle_signals() -> None:
    """SIGTERM and SIGINT end the server through `stop` (call from the main thread)."""
    _stopping.clear()
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def wait() -> None:
    """Block the main thread until SIGTERM or SIGINT."""
    try:
        while not _stopping.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass


def stop(engine: Engine, close_page: Callable[[], None]) -> None:
    """Give back the engine (vLLM's engine core and its GPU memory) and the validation
    workers, close the page, and end any other child process.

    The engine goes first: its runs in flight end, so their streams close and the web
    server does not wait on them."""
    code = 0 if _stopping.is_set() else 1  # asked to stop, or an error on the way out
    _stopping.set()
    stopper = threading.Thread(target=_stop_engine_and_workers, args=(engine,),
                               name="playground-stop", daemon=True)
    stopper.start()
    stopper.join(STOP_S)
    if stopper.is_alive():
        log.warning("the engine did not stop within %.0f s; its processes are ended", STOP_S)
    close_page()
    _end_children(CHILDREN_S)
    timer = threading.Timer(EXIT_S, exit_now, args=(code,))
    timer.daemon = True
    timer.start()


def exit_now(code: int) -> None:
    """End the process now, once `stop` has ended what it started.

    Not the interpreter's own exit: on 2 cores it took 2-5 s more, garbage-collecting
    gradio's and torch's objects, and it waits for the CPU model's thread to finish the
    load or the token it is on. Nothing it would do matters once the children are gone."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _stop_engine_and_workers(engine: Engine) -> None:
    workers.stop_all(close=True)
    try:
        engine.shutdown()
    except Exception:  # the children are ended below all the same
        log.exception("the engine's shutdown failed")


def _end_children(limit_s: float) -> None:
    """SIGTERM, then SIGKILL, to every child process multiprocessing started here: vLLM's
    engine core while it is still loading (no shutdown reaches it then). The fork server
    and resource tracker end by themselves when this process does (their pipe from it
    closes)."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    deadline = time.monotonic() + limit_s
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
    for child in children:
        if child.is_alive():
            log.warning("child process %s (%s) ignored SIGTERM: killed", child.pid, child.name)
            child.kill()
            child.join(1)
