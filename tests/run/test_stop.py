"""Stop and disconnect: a stopped request leaves the engine at once, its partial output kept
and labelled "stopped"; a dead engine is reported, not retried."""

import asyncio
import time
from types import SimpleNamespace

import pytest

from playground.engines.fake import FakeEngine
from playground.errors import EngineDead
from playground.run import batch
from playground.run.result import RunResult
from playground.run.service import run_request, stream_request

LONG = " ".join(f"w{i}" for i in range(400))


def slow_engine(concurrent: bool) -> FakeEngine:
    engine = FakeEngine(delay_s=0.02, concurrent=concurrent)
    engine.load()
    return engine


async def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("concurrent", [False, True])
@pytest.mark.parametrize("how", ["cancel", "aclose"])
def test_a_stopped_request_leaves_the_engine_and_keeps_its_partial_output(concurrent, how):
    engine = slow_engine(concurrent)
    engine.enqueue(LONG, LONG)
    live: list[RunResult] = []

    async def scenario() -> float:
        updates = stream_request(engine, "regex", "w.*", "p", {"max_tokens": 500}, live=live)
        if how == "cancel":  # what Gradio's Stop (cancels=[...]) does to the running task
            async def consume() -> None:
                async for _ in updates:
                    pass

            task = asyncio.create_task(consume())
            await until(lambda: live and live[0].output_tokens >= 5)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:  # what Gradio does to the generator of a closed page
            async for update in updates:
                if update["constrained"]["output_tokens"] >= 5:
                    break
            await updates.aclose()
        stopped_at = time.monotonic()
        await until(lambda: engine.active == 0, timeout=1.0)
        return time.monotonic() - stopped_at

    freed_in = asyncio.run(scenario())
    assert freed_in < 1.0
    constrained, free = live
    assert constrained.verdict == free.verdict == "stopped"
    assert constrained.text.startswith("w0 w1 w2") and len(constrained.text) < len(LONG)
    assert "partial" in constrained.errors[0]
    assert constrained.latency_s is not None
    if not concurrent:  # the CPU engine runs the unconstrained side after the constrained
        assert free.text == "" and "before any output" in free.errors[0]


def test_the_next_request_starts_at_once_after_a_stop():
    engine = slow_engine(concurrent=False)
    engine.enqueue(LONG, "a b", "c d")  # the stopped click never starts its second run

    async def scenario() -> float:
        task = asyncio.create_task(run_request(engine, "regex", ".*", "p", {"max_tokens": 500}))
        await until(lambda: len(engine.requests) == 1 and engine.active == 1)
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        start = time.monotonic()
        result = await run_request(engine, "regex", ".*", "p", {})
        assert result["constrained"]["verdict"] == "valid"
        return time.monotonic() - start

    assert asyncio.run(scenario()) < 1.0


def test_a_stopped_batch_counts_its_stopped_prompts():
    engine = slow_engine(concurrent=False)
    engine.enqueue("a b", LONG, LONG)
    holder: list[batch.BatchResult] = []

    async def scenario() -> None:
        async def consume() -> None:
            async for result in batch.run_batch(engine, "regex", ".*", ["p1", "p2", "p3"]):
                holder[:] = [result]

        task = asyncio.create_task(consume())
        await until(lambda: holder and holder[0].results[1] is not None
                    and holder[0].results[1].output_tokens >= 3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    result = holder[0]
    assert [r.verdict if r else None for r in result.results] == ["valid", "stopped", None]
    assert result.totals["stopped"] == 1 and result.totals["valid"] == 1
    assert result.totals["finished"] == 2
    assert engine.active == 0


# ---- vLLM, with a stub AsyncLLM --------------------------------------------------------


class StubAsyncLLM:
    """What VllmEngine uses of vLLM's AsyncLLM: generate (slowly), abort, errored."""

    def __init__(self, fail_after: int | None = None, exit_code: int = -9) -> None:
        self.aborted: list[str] = []
        self.closed: list[str] = []
        self.errored = False
        self.fail_after = fail_after
        self.engine_core = SimpleNamespace(resources=SimpleNamespace(engine_manager=SimpleNamespace(
            finished_procs=lambda: {"EngineCore_DP0": exit_code} if self.errored else {})))

    async def generate(self, prompt, params, request_id):
        try:
            for index in range(1000):
                if self.fail_after is not None and index == self.fail_after:
                    self.errored = True  # as after the engine core process died
                    raise RuntimeError("EngineCore encountered an issue")
                await asyncio.sleep(0.01)
                completion = SimpleNamespace(text=f" t{index}", token_ids=[index],
                                             finish_reason=None)
                yield SimpleNamespace(outputs=[completion], finished=False, metrics=None)
        finally:
            self.closed.append(request_id)

    async def abort(self, request_id):
        self.aborted.append(request_id)


def stub_vllm_engine(llm: StubAsyncLLM):
    from playground.engines.vllm_engine import VllmEngine

    engine = VllmEngine("stub-model", {"structured_outputs_config": {
        "backend": "guidance", "disable_any_whitespace": False}})
    engine.llm = llm
    engine.tokenizer = SimpleNamespace(
        apply_chat_template=lambda messages, **kwargs: messages[-1]["content"],
        encode=lambda text, add_special_tokens=False: [1, 2, 3])
    engine._params = lambda constraint, settings: None  # no vLLM import on this machine
    engine.check = lambda constraint: []
    engine._ready.set()
    return engine


def test_a_stopped_vllm_request_is_aborted_inside_the_engine():
    llm = StubAsyncLLM()
    engine = stub_vllm_engine(llm)
    live: list[RunResult] = []

    async def scenario() -> None:
        task = asyncio.create_task(_consume(stream_request(engine, "regex", ".*", "p", {},
                                                           live=live)))
        await until(lambda: live and live[0].output_tokens >= 3 and live[1].output_tokens >= 3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert sorted(llm.aborted) == ["playground-0", "playground-1"]
    assert sorted(llm.closed) == ["playground-0", "playground-1"]
    assert [r.verdict for r in live] == ["stopped", "stopped"]
    assert live[0].text.startswith(" t0 t1 t2")


async def _consume(updates) -> None:
    async for _ in updates:
        pass


def test_a_dead_vllm_engine_is_reported_and_not_restarted():
    llm = StubAsyncLLM(fail_after=3)
    engine = stub_vllm_engine(llm)
    result = asyncio.run(run_request(engine, "regex", ".*", "p", {}))
    for side in ("constrained", "unconstrained"):
        assert result[side]["verdict"] == "error"
        message = result[side]["errors"][0]
        assert message.startswith("engine died: the vLLM engine core process EngineCore_DP0 "
                                  "was killed by SIGKILL"), message
        assert message.endswith("restart the app")
    assert engine.health == "failed" and not engine.ready
    assert llm.aborted == []  # a dead engine has nothing to abort
    with pytest.raises(EngineDead, match="restart the app"):
        asyncio.run(run_request(engine, "regex", ".*", "p", {}))


def test_health_notices_a_death_between_requests():
    llm = StubAsyncLLM(exit_code=1)
    engine = stub_vllm_engine(llm)
    assert engine.health == "ready"
    llm.errored = True
    assert engine.health == "failed"
    assert "exited with code 1" in engine.failure


def test_vllm_prompts_are_encoded_off_the_event_loop_with_the_playgrounds_own_tokenizer():
    """vLLM's tokenizer deep-copies itself on the loop when our threads hold its copies
    (a 2 s stall of every user on the H100): ours is separate, and used in a thread."""
    import threading

    llm = StubAsyncLLM(fail_after=2)
    engine = stub_vllm_engine(llm)
    threads: list[str] = []
    engine.tokenizer = SimpleNamespace(
        apply_chat_template=lambda messages, **kwargs: messages[-1]["content"],
        encode=lambda text, add_special_tokens=False: threads.append(
            threading.current_thread().name) or [1, 2, 3])
    asyncio.run(run_request(engine, "regex", ".*", "p", {}))
    assert threads and threading.main_thread().name not in threads


def test_own_tokenizer_is_none_where_transformers_cannot_load_one(playground_log):
    """vLLM's own is used then (the engine warns), and the backend is xgrammar."""
    from playground.engines.vllm_engine import own_tokenizer

    assert own_tokenizer("/no/such/model/folder") is None
    assert "using vLLM's tokenizer" in playground_log.text
