"""Streamed updates for a page, thinned so that drawing them never competes with the model.

On a 2-core machine a page redrawn for every token took the cores from the model: the
"Iconic 90s car" preset decoded at 19-23 tokens/s in a browser tab against 51-55 through the
API. A reader needs no more than ~10 frames a second, and the last one always.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

T = TypeVar("T")
UPDATES_PER_S = 10.0


async def coalesce(source: AsyncIterator[T], interval_s: float = 1 / UPDATES_PER_S,
                   clock: Callable[[], float] = time.monotonic) -> AsyncIterator[T]:
    """The items of `source`, at most one per `interval_s`: an item arriving sooner is
    held, replaced by any newer one, and sent when the interval is up (even if nothing
    newer comes). The last item is always sent. Errors of `source` pass through."""
    last = -float("inf")
    held: list[T] = []  # zero or one item waiting for its turn
    pending: asyncio.Future[T] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            wait = max(0.0, last + interval_s - clock()) if held else None
            done, _ = await asyncio.wait({pending}, timeout=wait)
            if not done:  # the interval is up and nothing newer came: send what waits
                last = clock()
                yield held.pop()
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                break
            finally:
                pending = None
            if clock() - last >= interval_s:
                held.clear()
                last = clock()
                yield item
            else:
                held[:] = [item]
        if held:
            yield held.pop()
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


class Changes:
    """Only what changed since the last update of a page: unchanged values become
    `skip` (gr.skip()), so the browser neither receives nor redraws them."""

    def __init__(self, size: int, skip: Any) -> None:
        self.sent: list[Any] = [object()] * size
        self.skip = skip

    def __call__(self, values: tuple[Any, ...] | list[Any]) -> tuple[Any, ...]:
        out = []
        for index, value in enumerate(values):
            if value == self.skip or (isinstance(value, str | int | float | bool | None)
                                      and value == self.sent[index]):
                out.append(self.skip)
            else:
                self.sent[index] = value
                out.append(value)
        return tuple(out)
