"""Streamed updates for a page, thinned so that drawing them never competes with the model.

On a 2-core machine a page redrawn for every token took the cores from the model: the
"Iconic 90s car" preset decoded at 19-23 tokens/s in a browser tab against 51-55 through the
API. A reader needs a few frames a second, and the last one always (the page uses 5, see
`web.controls.PAGE_UPDATE_EVERY_S`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

T = TypeVar("T")
UPDATES_PER_S = 10.0


async def coalesce(source: AsyncIterator[T], interval_s: float = 1 / UPDATES_PER_S,
                   clock: Callable[[], float] = time.monotonic) -> AsyncIterator[T]:
    """The items of `source`, at most one per `interval_s`: an item arriving sooner waits,
    replaced by any newer one, and is sent when its interval is up (even if nothing newer
    comes). The last item is always sent, as soon as `source` ends; an error of `source`
    follows it. With `interval_s` infinite: the first item and the last.

    `source` runs in one task of its own from start to end (generators that hold timeouts
    or cancel scopes must not move between tasks), never waiting for the consumer; closing
    or cancelling the consumer cancels that task, which closes `source`.
    """
    newest: list[T] = []  # the newest item not yet sent, if any
    failure: list[BaseException] = []
    fresh, ended = asyncio.Event(), asyncio.Event()

    async def pump() -> None:
        try:
            async for item in source:
                newest[:] = [item]
                fresh.set()
        except Exception as exc:  # handed to the consumer after the items before it
            failure.append(exc)
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()
            ended.set()
            fresh.set()

    task = asyncio.create_task(pump())
    last = -float("inf")
    try:
        while True:
            await fresh.wait()
            fresh.clear()
            if newest:
                wait = last + interval_s - clock()
                if wait > 0 and not ended.is_set():
                    # Newer items replace this one meanwhile; the end sends it at once.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(ended.wait(),
                                               None if math.isinf(wait) else wait)
                last = clock()
                yield newest.pop()
            if ended.is_set() and not newest:
                break
        if failure:
            raise failure[0]
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


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
