"""Where the playground's path loses against raw vLLM at many constrained requests: the
same bursts with the work after the stream switched off piece by piece, one engine, the
variants in turns, each burst timed in its phases (GPU machine; issue 22).

Variants: `full` (the playground as it runs), `no_tokenization` (the tokenization check
off: `engine.text_token_ids` answers None), `no_judge` (neither the verdict nor the
check: `service.judge` answers at once). Raw vLLM's burst runs before each, as the bench's.

Per playground burst: `stream_s` (start to the last request's final chunk from the
engine), `tail_s` (from there to the last result: what the playground adds after the last
token), the mean verdict (an escape's second verdict included) and tokenization-check
times, and the event loop's lag: a 1 ms ticker's worst and summed overshoot, which an idle
loop has too, so compare it with the raw burst's (the ticker runs in both). A first burst
of each kind, not counted, warms the caches and the validation workers.

  python3 tools/gpu/tail_ab.py [--levels 32 128] [--rounds 7] > tail_ab.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any


class LoopLag:
    """A ticker that wakes every millisecond and sums how late it woke."""

    def __init__(self) -> None:
        self.worst = self.total = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            late = time.perf_counter() - before - 0.001
            self.worst, self.total = max(self.worst, late), self.total + max(late, 0.0)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *_: Any) -> None:
        assert self._task is not None
        self._task.cancel()


def timed(fn: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", type=int, nargs="+", default=[128])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    from dummy_engine import loaded_engine

    from playground.bench import engine_bench as bench
    from playground.core.settings import SamplingSettings
    from playground.judging.validation import Verdict
    from playground.run import service, tokenization

    engine = loaded_engine()
    own_ids, own_judge, own_canonical = (engine.text_token_ids, service.judge,
                                         tokenization.canonical_ids)
    own_stream = engine.stream
    last_chunk: list[float] = []

    async def stream(*a: Any, **k: Any) -> AsyncIterator[Any]:
        # Closed with this wrapper, as stream_run closes the engine's own stream.
        async with aclosing(own_stream(*a, **k)) as chunks:
            async for chunk in chunks:
                if chunk.done:
                    last_chunk.append(time.perf_counter())
                yield chunk

    engine.stream = stream

    async def instant(*_: Any, **__: Any) -> Verdict:
        return Verdict("valid", [])

    variants = {
        "full": (own_ids, own_judge),
        "no_tokenization": (lambda text: None, own_judge),
        "no_judge": (lambda text: None, instant),
    }

    async def burst(name: str, level: int) -> dict[str, Any]:
        ids, judge = variants[name]
        judged: list[float] = []
        checked: list[float] = []
        engine.text_token_ids = ids
        service.judge = timed(judge, judged)
        tokenization.canonical_ids = timed(own_canonical, checked)
        last_chunk.clear()
        try:
            with LoopLag() as lag:
                start = time.perf_counter()
                ours = await bench.throughput(engine, True, "playground", [256] * level)
                end = time.perf_counter()
        finally:
            engine.text_token_ids, service.judge = own_ids, own_judge
            tokenization.canonical_ids = own_canonical
        if len(last_chunk) != level:
            raise RuntimeError(f"{len(last_chunk)} of {level} streams finished")
        return {"tokens_per_s": ours["tokens_per_s"], "wall_s": ours["wall_s"],
                "stream_s": max(last_chunk) - start, "tail_s": end - max(last_chunk),
                "judge_s_mean": statistics.mean(judged) if judged else 0.0,
                "check_s_mean": statistics.mean(checked) if checked else 0.0,
                "loop_lag_worst_s": lag.worst, "loop_lag_total_s": lag.total,
                "escaped": ours["constraint_escaped"]}

    async def measure(level: int) -> dict[str, Any]:
        await bench.throughput(engine, True, "raw", [16] * level)
        for name in variants:  # warm: not counted
            await burst(name, level)
        found: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name in variants:
                with LoopLag() as raw_lag:  # the ticker's own cost on both sides
                    raw = await bench.throughput(engine, True, "raw", [256] * level)
                ours = await burst(name, level)
                ours["raw_loop_lag_total_s"] = raw_lag.total
                ours["ratio"] = ours["tokens_per_s"] / raw["tokens_per_s"]
                ours["raw_wall_s"] = raw["wall_s"]
                found[name].append(ours)
        return {name: {"ratio_median": statistics.median(r["ratio"] for r in runs),
                       **{f"{key}_median": statistics.median(r[key] for r in runs)
                          for key in ("raw_wall_s", "wall_s", "stream_s", "tail_s",
                                      "judge_s_mean", "check_s_mean", "loop_lag_total_s")},
                       "rounds": runs}
                for name, runs in found.items()}

    async def levels() -> dict[str, Any]:
        await engine.raw_request("Hi", None, SamplingSettings(max_tokens=1))
        return {str(level): await measure(level) for level in args.levels}

    try:
        report = {"backend": engine.info.options.get("backend"), "rounds": args.rounds,
                  "levels": asyncio.run(levels())}
    finally:
        engine.shutdown()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":  # the validation pool's workers import this module again
    main()
