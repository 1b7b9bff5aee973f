"""Thinning streamed updates for the page."""

import asyncio

import pytest

from playground.run.streaming import Changes, coalesce

SKIP = {"__type__": "update"}


async def _items(delays_and_items):
    for delay, item in delays_and_items:
        await asyncio.sleep(delay)
        yield item


def _collect(source, interval):
    async def run():
        return [item async for item in coalesce(source, interval)]

    return asyncio.run(run())


def test_a_fast_stream_is_thinned_and_ends_with_its_last_item():
    got = _collect(_items([(0.002, i) for i in range(200)]), 0.05)
    assert got[0] == 0 and got[-1] == 199
    assert len(got) <= 200 * 0.002 / 0.05 * 3 + 2  # loose: timers on a busy CI machine
    assert got == sorted(got)


def test_a_slow_stream_passes_unchanged():
    assert _collect(_items([(0.03, i) for i in range(5)]), 0.01) == [0, 1, 2, 3, 4]


def test_a_held_item_is_sent_when_its_interval_is_up_without_waiting_for_the_next():
    async def run():
        seen = []
        start = asyncio.get_running_loop().time()
        source = _items([(0, "a"), (0, "b"), (0.5, "c")])
        async for item in coalesce(source, 0.05):
            seen.append((item, asyncio.get_running_loop().time() - start))
        return seen

    seen = asyncio.run(run())
    assert [item for item, _ in seen] == ["a", "b", "c"]
    assert seen[1][1] < 0.3  # "b" did not wait for "c"


def test_an_infinite_interval_sends_the_first_and_the_last_at_once():
    async def run():
        start = asyncio.get_running_loop().time()
        got = [item async for item in coalesce(_items([(0.01, i) for i in range(20)]),
                                               float("inf"))]
        return got, asyncio.get_running_loop().time() - start

    got, took = asyncio.run(run())
    assert got == [0, 19] and took < 5


def test_a_request_shows_its_finished_side_while_the_other_has_not_started():
    """The CPU engine runs the two sides one after the other: the constrained verdict is
    shown on the clock, not held until the free run's first token (2 s later here)."""
    from playground.engines.fake import FakeEngine
    from playground.run.service import stream_request

    class SlowFreeStart(FakeEngine):
        async def stream(self, prompt, constraint, settings, inspect=False):
            if constraint is None:
                await asyncio.sleep(2.0)
            async for chunk in super().stream(prompt, constraint, settings, inspect):
                yield chunk

    engine = SlowFreeStart(concurrent=False)
    engine.load()
    engine.enqueue("Positive", "Negative")

    async def run():
        start = asyncio.get_running_loop().time()
        seen = []
        async for update in stream_request(engine, "choice", "Positive\nNegative", "p",
                                           {"max_tokens": 4}, every_s=0.1):
            seen.append((asyncio.get_running_loop().time() - start,
                         update["constrained"]["verdict"], update["unconstrained"]["text"]))
        return seen

    seen = asyncio.run(run())
    shown = next(at for at, verdict, _ in seen if verdict == "valid")
    free_started = next(at for at, _, text in seen if text)
    assert free_started - shown > 1.5, seen  # not held for the free run's first token
    assert seen[-1][1:] == ("valid", "Negative")


def test_errors_pass_through_and_the_source_is_closed():
    closed = []

    async def failing():
        try:
            yield 1
            raise ValueError("bad input")
        finally:
            closed.append(True)

    with pytest.raises(ValueError, match="bad input"):
        _collect(failing(), 0.05)
    assert closed == [True]


def test_a_consumer_that_stops_early_closes_the_source():
    closed = []

    async def endless():
        try:
            while True:
                await asyncio.sleep(0.001)
                yield 1
        finally:
            closed.append(True)

    async def run():
        updates = coalesce(endless(), 0.01)
        async for _ in updates:
            break
        await updates.aclose()

    asyncio.run(run())
    assert closed == [True]


def test_changes_skips_what_the_page_already_shows():
    changes = Changes(3, SKIP)
    assert changes(("a", "b", None)) == ("a", "b", None)
    assert changes(("a", "c", None)) == (SKIP, "c", SKIP)
    assert changes((SKIP, "c", 1)) == (SKIP, SKIP, 1)
    assert changes(("a", "c", [1])) == (SKIP, SKIP, [1])  # not a plain value: always sent
