"""A child ends when the process that started it is killed outright (SIGKILL: it has no
chance to stop anything): a validation worker forked from it, one from the fork server
that is busy, and a child started from a thread that has ended (vLLM's engine core)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

psutil = pytest.importorskip("psutil")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def _parent(code: str) -> tuple[subprocess.Popen, list[int]]:
    """`code` in a process of its own; it prints the pids to watch, then waits."""
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    line = process.stdout.readline()
    if not line:
        process.kill()
        pytest.fail("the parent process printed nothing")
    return process, [int(pid) for pid in line.split()]


def _gone_after_sigkill(process: subprocess.Popen, pids: list[int], limit_s: float) -> None:
    children = [psutil.Process(pid) for pid in pids]
    assert all(child.is_running() for child in children)
    process.kill()
    process.wait()
    deadline = time.monotonic() + limit_s
    try:
        while left := [c.pid for c in children if c.is_running()
                       and c.status() != psutil.STATUS_ZOMBIE]:
            assert time.monotonic() < deadline, f"still alive after {limit_s} s: {left}"
            time.sleep(0.1)
    finally:
        for child in children:
            if child.is_running():
                child.kill()


def test_a_worker_forked_from_the_server_ends_with_it():
    # One thread: the worker is forked, and holds the parent's end of its own pipe (so it
    # never reads EOF): it used to stay, orphaned.
    process, pids = _parent("""
        import os, time
        from playground.judging import workers
        print(workers.call(os.getpid, timeout=60), flush=True)
        time.sleep(120)
    """)
    _gone_after_sigkill(process, pids, limit_s=3)


def test_a_busy_worker_of_the_fork_server_ends_with_the_server():
    # Threads running: the worker comes from the fork server. Busy, it does not read its
    # pipe, and it used to keep the fork server (and itself) alive until its work ended.
    process, pids = _parent("""
        import multiprocessing, os, threading, time
        from multiprocessing import forkserver
        from playground.judging import workers
        threading.Thread(target=workers.call, args=(time.sleep, 120), kwargs={"timeout": 300},
                         daemon=True).start()
        while not multiprocessing.active_children():
            time.sleep(0.05)
        time.sleep(1)  # the worker has its call
        print(forkserver._forkserver._forkserver_pid,
              *(p.pid for p in multiprocessing.active_children()), flush=True)
        time.sleep(120)
    """)
    _gone_after_sigkill(process, pids, limit_s=5)


def test_a_child_started_from_an_ended_thread_ends_with_its_parent():
    # vLLM's engine core is started from the engine's loading thread, which ends: the
    # kernel's parent-death signal would kill it then, so kernel=False watches the parent.
    process, pids = _parent("""
        import os, subprocess, sys, threading, time
        child = ("import os, time\\n"
                 "from playground.core.parent_death import end_with_parent\\n"
                 f"end_with_parent({os.getpid()}, kernel=False)\\n"
                 "time.sleep(120)\\n")
        started = []
        thread = threading.Thread(target=lambda: started.append(
            subprocess.Popen([sys.executable, "-c", child])))
        thread.start()
        thread.join()
        time.sleep(2)  # past the thread's end and a check of the parent
        print(started[0].pid if started[0].poll() is None else 0, flush=True)
        time.sleep(120)
    """)
    assert pids != [0], "the child ended with the thread that started it"
    _gone_after_sigkill(process, pids, limit_s=4)


def test_a_parent_gone_before_the_child_looks_is_noticed():
    child = subprocess.run(
        [sys.executable, "-c", "import time\n"
         "from playground.core.parent_death import end_with_parent\n"
         "end_with_parent(1)\n"  # not this process's parent: it ended before the call
         "time.sleep(30)\n"], timeout=20)
    assert child.returncode == -signal.SIGKILL
