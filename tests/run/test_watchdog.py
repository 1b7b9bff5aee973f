"""The event-loop watchdog: a blocked loop is logged with where it is stuck, and counted."""

import asyncio
import time

from playground.run import watchdog


def test_a_blocking_call_on_the_loop_is_logged_with_its_stack_and_counted(playground_log):
    def block_the_loop_for(seconds: float) -> None:
        time.sleep(seconds)  # what a blocking call does: the loop cannot run

    async def scenario() -> watchdog.LoopStalls:
        stalls = watchdog.watch(stall_s=0.3)
        await asyncio.sleep(0.3)
        block_the_loop_for(0.8)
        await asyncio.sleep(0.4)  # the watchdog sees the loop back
        return stalls

    stalls = asyncio.run(scenario())
    assert stalls.count == 1 and 0.5 < stalls.longest_s < 2.0
    stuck = [r.getMessage() for r in playground_log.records if "has not run" in r.getMessage()]
    assert stuck and "block_the_loop_for" in stuck[0]
    assert any("was blocked for" in r.getMessage() for r in playground_log.records)


def test_a_loop_that_only_awaits_has_no_stalls():
    async def scenario() -> watchdog.LoopStalls:
        stalls = watchdog.watch(stall_s=0.3)
        for _ in range(10):
            await asyncio.sleep(0.05)
        assert watchdog.watch() is stalls  # once per loop
        return stalls

    stalls = asyncio.run(scenario())
    assert stalls.count == 0 and stalls.as_dict()["stalls"] == 0
    assert stalls.as_dict()["stall_threshold_s"] == 0.3  # the threshold in use


def test_a_closed_loop_is_let_go():
    """Each watch holds its loop: closed ones are dropped, not kept for the process's life
    (with them whatever is keyed on a loop, such as the openai engine's clients)."""
    import gc
    import weakref

    async def scenario() -> None:
        watchdog.watch()

    loops = []
    for _ in range(3):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(scenario())
        loop.close()
        loops.append(weakref.ref(loop))
        del loop
    asyncio.run(scenario())  # a new watch drops the closed ones
    time.sleep(2 * watchdog.TICK_S)  # their threads end
    gc.collect()
    assert all(ref() is None for ref in loops)
