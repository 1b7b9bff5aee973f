"""Notice when the server's event loop stalls, and say where.

Every user's page, stream and /status answer go through one event loop; a call that blocks
it (a slow parse, a lock, a long C call holding the GIL) freezes everyone at once. A thread
watches a tick the loop posts every TICK_S: when the tick is STALL_S late it logs the loop
thread's stack (where it is stuck), and when the loop is back, how long it was stuck. The
counts go to /status, so a soak test can check them rather than guess from client timings.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from dataclasses import dataclass

log = logging.getLogger(__name__)
TICK_S = 0.1
STALL_S = 1.0
STACK_FRAMES = 12


@dataclass
class LoopStalls:
    """What the watchdog saw of one event loop: stalls of STALL_S or more."""

    count: int = 0
    longest_s: float = 0.0
    threshold_s: float = STALL_S

    def as_dict(self) -> dict[str, float]:
        return {"stalls": self.count, "longest_stall_s": round(self.longest_s, 3),
                "stall_threshold_s": self.threshold_s}


class _Watch:
    def __init__(self, loop: asyncio.AbstractEventLoop, stall_s: float) -> None:
        self.loop, self.stall_s = loop, stall_s
        self.thread_id = threading.get_ident()  # the loop's thread: watch() runs on it
        self.last_tick = time.monotonic()
        self.stalls = LoopStalls(threshold_s=stall_s)
        loop.call_soon(self._tick)
        threading.Thread(target=self._watch, name="playground-loop-watchdog",
                         daemon=True).start()

    def _tick(self) -> None:
        self.last_tick = time.monotonic()
        if not self.loop.is_closed():
            self.loop.call_later(TICK_S, self._tick)

    def _watch(self) -> None:
        stalled_since: float | None = None
        while not self.loop.is_closed():
            time.sleep(TICK_S)
            late = time.monotonic() - self.last_tick
            if stalled_since is None and late >= self.stall_s:
                stalled_since = self.last_tick
                log.warning("the event loop has not run for %.1f s; it is here:\n%s", late,
                            self._loop_stack())
            elif stalled_since is not None and late < self.stall_s:
                stalled_s = self.last_tick - stalled_since
                self.stalls.count += 1
                self.stalls.longest_s = max(self.stalls.longest_s, stalled_s)
                log.warning("the event loop was blocked for %.1f s", stalled_s)
                stalled_since = None

    def _loop_stack(self) -> str:
        frame = sys._current_frames().get(self.thread_id)
        if frame is None:
            return "(its thread has ended)"
        return "".join(traceback.format_stack(frame)[-STACK_FRAMES:]).rstrip()


_watches: dict[int, _Watch] = {}
_lock = threading.Lock()


def watch(stall_s: float = STALL_S) -> LoopStalls:
    """Watch the running event loop (once per loop; later calls return the same counts)."""
    loop = asyncio.get_running_loop()
    with _lock:
        for key in [key for key, w in _watches.items() if w.loop.is_closed()]:
            del _watches[key]  # each holds its loop (and what is keyed on it) alive
        current = _watches.get(id(loop))
        if current is None or current.loop is not loop:
            current = _watches[id(loop)] = _Watch(loop, stall_s)
        return current.stalls


def seen() -> LoopStalls | None:
    """The counts of the loop watched most recently (None before any request)."""
    with _lock:
        watches = [w for w in _watches.values() if not w.loop.is_closed()]
    return watches[-1].stalls if watches else None
