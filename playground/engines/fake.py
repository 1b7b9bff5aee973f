"""A fake engine you enqueue outputs into, for fast tests of everything above engines."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from playground.core.constraints import Constraint
from playground.engines.base import Chunk, Engine, EngineInfo, Progress, SamplingSettings, TokenDist

END = 256  # the end token of the byte vocabulary (playground.judging.matcher) its token ids use


class FakeEngine(Engine):
    # Token ids are the text's UTF-8 bytes; distributions are made up (see `wants`).
    inspects = True

    def __init__(self, delay_s: float = 0.0, concurrent: bool = True) -> None:
        super().__init__()
        self.info = EngineInfo("fake", "fake-model", "none")
        self.queue: deque[Chunk | str] = deque()
        self.requests: list[tuple[str, Constraint | None, SamplingSettings]] = []
        self.delay_s = delay_s
        self.concurrent = concurrent
        self.active = 0  # requests inside the engine now (a stopped one must leave at once)
        # The text the fake model "would" write: its first choice at each step, as the
        # token inspector sees it (elsewhere the token it wrote).
        self.wants = ""
        # While True, a run waits inside the engine before its first word: a test holds
        # the model for as long as it needs, not for a guessed number of seconds.
        self.hold = False

    def enqueue(self, *outputs: Chunk | str) -> None:
        """Queue outputs, one per request: a string (finish "stop") or a final Chunk."""
        self.queue.extend(outputs)

    def _load(self, progress: Progress) -> None:
        progress(0.5, "pretending to load")

    async def stream(self, prompt: str, constraint: Constraint | None,
                     settings: SamplingSettings, inspect: bool = False
                     ) -> AsyncIterator[Chunk]:
        self.requests.append((prompt, constraint, settings))
        output = self.queue.popleft() if self.queue else ""
        final = output if isinstance(output, Chunk) else Chunk(text=output, finish_reason="stop")
        words = final.text.split(" ")
        self.active += 1
        try:
            while self.hold:
                await asyncio.sleep(0.01)
            for index, word in enumerate(words):
                await asyncio.sleep(self.delay_s)
                piece = word if index == 0 else " " + word
                yield Chunk(text=piece, output_tokens=index + 1,
                            token_ids=list(piece.encode("utf-8")))
        finally:
            self.active -= 1
        yield Chunk(done=True, output_tokens=final.output_tokens or len(words),
                    finish_reason=final.finish_reason, prompt_tokens=len(prompt.split()),
                    compile_s=0.0 if constraint else None, error=final.error,
                    token_ids=[END] if final.finish_reason == "stop" else [])

    async def inspect_distributions(self, prompt: str, settings: SamplingSettings,
                                    output_ids: list[int]) -> list[TokenDist]:
        """First choice `wants` at each step (else the token written), at probability 0.6;
        the token written 0.2 where it was not the first choice; fillers 0.05 each."""
        wanted = list(self.wants.encode("utf-8"))
        dists = []
        for index, token in enumerate(output_ids):
            first = wanted[index] if index < len(wanted) else token
            top = [(first, math.log(0.6))]
            if token != first:
                top.append((token, math.log(0.2)))
            top += [(filler, math.log(0.05)) for filler in b" 0a{}" if filler not in
                    (first, token)][:5 - len(top)]
            dists.append(TokenDist(top, top[0][1] if token == first else math.log(0.2),
                                   1 if token == first else 2))
        return dists

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
