"""A fake engine you enqueue outputs into, for fast tests of everything above engines."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from playground.constraints import Constraint
from playground.engines.base import Chunk, Engine, EngineInfo, Progress, SamplingSettings


class FakeEngine(Engine):
    def __init__(self, delay_s: float = 0.0, concurrent: bool = True) -> None:
        super().__init__()
        self.info = EngineInfo("fake", "fake-model", "none")
        self.queue: deque[Chunk | str] = deque()
        self.requests: list[tuple[str, Constraint | None, SamplingSettings]] = []
        self.delay_s = delay_s
        self.concurrent = concurrent
        self.active = 0  # requests inside the engine now (a stopped one must leave at once)

    def enqueue(self, *outputs: Chunk | str) -> None:
        """Queue outputs, one per request: a string (finish "stop") or a final Chunk."""
        self.queue.extend(outputs)

    def _load(self, progress: Progress) -> None:
        progress(0.5, "pretending to load")

    async def stream(self, prompt: str, constraint: Constraint | None,
                     settings: SamplingSettings) -> AsyncIterator[Chunk]:
        self.requests.append((prompt, constraint, settings))
        output = self.queue.popleft() if self.queue else ""
        final = output if isinstance(output, Chunk) else Chunk(text=output, finish_reason="stop")
        words = final.text.split(" ")
        self.active += 1
        try:
            for index, word in enumerate(words):
                await asyncio.sleep(self.delay_s)
                yield Chunk(text=word if index == 0 else " " + word, output_tokens=index + 1)
        finally:
            self.active -= 1
        yield Chunk(done=True, output_tokens=final.output_tokens or len(words),
                    finish_reason=final.finish_reason, prompt_tokens=len(prompt.split()),
                    compile_s=0.0 if constraint else None, error=final.error)

    async def raw_request(self, prompt: str, constraint: Constraint | None,
                          settings: SamplingSettings) -> dict[str, Any]:
        """The same queued output, timed as a raw path is."""
        start, ttft, tokens = time.perf_counter(), None, 0
        async for chunk in self.stream(prompt, constraint, settings):
            if chunk.done:
                tokens = chunk.output_tokens
            elif ttft is None:
                ttft = time.perf_counter() - start
        return {"tokens": tokens, "ttft_s": ttft, "latency_s": time.perf_counter() - start}
