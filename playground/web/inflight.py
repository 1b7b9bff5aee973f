"""Runs in flight, per page session and tab, so that Stop can end them and show what they
had written.

The Stop handler cancels the run's task itself (the page's own `cancels=[...]` is sent only
after the Stop handler has answered); the cancelled run can yield nothing more, so the
service labels the results it holds "stopped" in place, and the Stop handler reads them
from here once the run has ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from cachetools import FIFOCache

from playground.run.result import RunResult


@dataclass
class Flight:
    # A click's constrained and unconstrained results, filled by service.stream_request.
    results: list[RunResult] = field(default_factory=list)
    batch: Any = None  # a batch tab's live BatchResult
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None  # the task running the handler

    def begin(self) -> None:
        """Called by the run's handler, in its own task."""
        self.task = asyncio.current_task()

    def stop(self) -> None:
        if self.task is not None and not self.done.is_set():
            self.task.cancel()

    async def ended(self, timeout_s: float = 5.0) -> bool:
        """Wait until the handler has ended (a Stop's cancellation reaches it first)."""
        try:
            await asyncio.wait_for(self.done.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


class InFlight:
    """The latest run of each (session, tab); bounded, since a closed page never asks."""

    def __init__(self, size: int = 1024) -> None:
        if size < 1:
            raise ValueError(f"InFlight keeps at least 1 run, not {size}")
        self.size = size
        # Not LRUCache: its get() refreshes a key, so a Stop would keep an old page's run
        # longer. FIFOCache moves a key to the newest end only when set again: the newest
        # start is kept longest, the oldest start goes first.
        self._flights: FIFOCache[tuple[str, str], Flight] = FIFOCache(maxsize=size)

    def start(self, session: str | None, tab: str) -> Flight:
        flight = Flight()
        if session is not None:
            self._flights[(session, tab)] = flight
        return flight

    def get(self, session: str | None, tab: str) -> Flight | None:
        return self._flights.get((session, tab)) if session is not None else None

    async def updates(self, session: str | None, tab: str,
                      click: Callable[[Flight], AsyncIterator[Any]]) -> AsyncIterator[Any]:
        """What `click` yields for a new flight of (session, tab), closed with this
        generator (a Stop, a closed page)."""
        async with aclosing(click(self.start(session, tab))) as updates:
            async for update in updates:
                yield update
