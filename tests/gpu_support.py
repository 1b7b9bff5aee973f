"""What the GPU tests share: the model, where results go, the engine flags, concurrent clicks.

$GPU_MODEL: a folder with a model's config and tokenizer, loaded with dummy weights (the
GPU machine's staged Qwen2.5-7B shape); $OUT: where results are appended as JSON lines;
$GPU_MEMORY_UTILIZATION: so two test runs can share one GPU.
"""

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from playground.core.presets import load_presets
from playground.engines.registry import defaults
from playground.judging import judge
from playground.run.service import run_request, stream_request

MODEL = os.environ.get("GPU_MODEL", "Qwen/Qwen2.5-7B-Instruct")
OUT = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
MEMORY = os.environ.get("GPU_MEMORY_UTILIZATION", "0.45")


def record(name: str, data: Any) -> None:
    if OUT:
        with open(OUT / name, "a") as file:
            file.write(json.dumps(data) + "\n")


def gpu_args(**overrides: Any):
    """The in-process vLLM engine's flags for the GPU tests."""
    args = defaults()
    args.engine, args.model = "vllm", MODEL
    args.load_format = "dummy" if os.environ.get("GPU_MODEL") else "auto"
    # Random weights fill JSON with whitespace unless whitespace is restricted.
    args.disable_any_whitespace = True
    args.gpu_memory_utilization = float(MEMORY)
    for name, value in overrides.items():
        setattr(args, name, value)
    return args


def concurrent_clicks(loop: asyncio.AbstractEventLoop, engine: Any, count: int
                      ) -> tuple[list[dict[str, Any]], float, float]:
    """`count` preset clicks at once: (results, wall time, summed latency of every run)."""
    presets = list(load_presets().values())
    chosen = [presets[i % len(presets)] for i in range(count)]

    async def one(preset):
        return await run_request(engine, preset.mode, preset.constraint_text, preset.prompt,
                                 {**preset.settings.model_dump(), "max_tokens": 64})

    async def together():
        return await asyncio.gather(*(one(p) for p in chosen))

    # Untimed first, as a server does at start (and the bench): the validation workers'
    # imports and each constraint's first compile are not batching. Measured alone on the
    # H100 without it: 8 clicks took 7.0 s of wall for 15.6 s of summed latency.
    judge.warm_up()
    loop.run_until_complete(together())
    start = time.perf_counter()
    results = loop.run_until_complete(together())
    wall = time.perf_counter() - start
    summed = sum(r[k]["latency_s"] for r in results for k in ("constrained", "unconstrained"))
    return results, wall, summed


def streamed_lengths(loop: asyncio.AbstractEventLoop, engine: Any) -> set[int]:
    """The constrained text's lengths over the updates of one 64-token regex run."""
    async def collect():
        return [u async for u in stream_request(
            engine, "regex", "[a-z]+( [a-z]+)*", "Write a long sentence.",
            {"max_tokens": 64})]

    return {len(u["constrained"]["text"]) for u in loop.run_until_complete(collect())}
