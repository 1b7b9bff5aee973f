"""`bench --engine cpu`: what batching buys the embedded engine, measured side by side.

Two figures, each against its own baseline in the same process, on the same loaded model,
rounds alternating so that a busy machine slows both alike:

- one click (both sides, as the page runs them, `service.stream_pair`), 64 tokens each:
  the engine batching both runs against the same engine held to one sequence a step
  (`max_batch` 1: the two runs one after the other, as the engine ran before batching);
- aggregate decode of several sessions' constrained runs at once against one run alone.

At temperature 0 both ways produce the same tokens (tests/engines/test_cpu_batch.py), so a
ratio of times is a ratio of speeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from playground.core.constraints import from_text
from playground.core.settings import SamplingSettings
from playground.engines.base import Engine
from playground.run.service import stream_pair, stream_run

CLICK_TOKENS = 64
SESSIONS = 4
# Long enough for 64 tokens on both sides: the free run describes, the constrained one must
# write a description of at least 400 characters.
CLICK_PROMPT = ("Describe the DeLorean from Back to the Future in detail: its look, engine "
                "and story.")
CLICK_SCHEMA = ('{"type": "object", "properties": {"description": {"type": "string", '
                '"minLength": 400}}, "required": ["description"]}')
SESSION_PROMPTS = [f"Describe {topic} in detail as JSON." for topic in
                   ("a car", "a city", "a book", "a song", "a planet", "a dog", "a river",
                    "a game")]


def batching_engine(engine: Engine) -> bool:
    """Whether `engine` is the embedded one with batching on (else there is nothing to
    compare)."""
    decoder = getattr(engine, "decoder", None)
    return decoder is not None and decoder.batched and getattr(engine, "max_batch", 1) > 1


@contextlib.contextmanager
def one_at_a_time(engine: Any) -> Iterator[None]:
    """The engine held to one sequence a step inside (its runs go one after another)."""
    saved = engine.max_batch
    engine.max_batch = engine.decoder.max_batch = 1
    try:
        yield
    finally:
        engine.max_batch = engine.decoder.max_batch = saved


async def _click(engine: Engine, settings: SamplingSettings) -> dict[str, Any]:
    constraint = from_text("json", CLICK_SCHEMA)
    start = time.perf_counter()
    pair = [update async for update in stream_pair(engine, CLICK_PROMPT, constraint,
                                                   settings)][-1]
    return {"wall_s": time.perf_counter() - start,
            "tokens": [side.output_tokens for side in pair],
            "verdict": pair[0].verdict}


async def click(engine: Engine, rounds: int, log: Callable[[str], None]) -> dict[str, Any]:
    settings = SamplingSettings(max_tokens=CLICK_TOKENS)
    await _click(engine, settings)  # the constraint's compile is in no timing
    serial, batched = [], []
    for _ in range(rounds):
        with one_at_a_time(engine):
            serial.append(await _click(engine, settings))
        batched.append(await _click(engine, settings))
    row = {"serial_s": statistics.median(r["wall_s"] for r in serial),
           "batched_s": statistics.median(r["wall_s"] for r in batched),
           "serial_rounds_s": [r["wall_s"] for r in serial],
           "batched_rounds_s": [r["wall_s"] for r in batched],
           "tokens": batched[-1]["tokens"], "serial_tokens": serial[-1]["tokens"],
           "verdict": batched[-1]["verdict"]}
    # Per round, the two ways back to back: this shared machine's speed drifts by up to
    # half between rounds (the same batched click took 1.45-2.6 s), less within one.
    row["ratio_per_round"] = [b["wall_s"] / s["wall_s"] for s, b in zip(serial, batched,
                                                                        strict=True)]
    row["ratio"] = statistics.median(row["ratio_per_round"])
    log(f"  click, {row['tokens']} tokens: serial {row['serial_s']:.2f} s, batched "
        f"{row['batched_s']:.2f} s (medians; ratio {row['ratio']:.3f}, rounds "
        f"{min(row['ratio_per_round']):.3f}-{max(row['ratio_per_round']):.3f})")
    return row


async def _constrained(engine: Engine, prompts: list[str]) -> dict[str, Any]:
    """Every prompt's constrained run at once (each as its own session's)."""
    constraint = from_text("json", CLICK_SCHEMA)
    settings = SamplingSettings(max_tokens=CLICK_TOKENS)

    async def one(prompt: str) -> int:
        runs = [r async for r in stream_run(engine, prompt, constraint, settings, constraint)]
        return runs[-1].output_tokens

    start = time.perf_counter()
    tokens = await asyncio.gather(*(one(prompt) for prompt in prompts))
    wall = time.perf_counter() - start
    return {"tokens": sum(tokens), "wall_s": wall, "tokens_per_s": sum(tokens) / wall}


async def sessions(engine: Engine, rounds: int, log: Callable[[str], None],
                   count: int = SESSIONS) -> dict[str, Any]:
    alone, together = [], []
    for index in range(rounds):
        alone.append(await _constrained(engine, [SESSION_PROMPTS[index % len(SESSION_PROMPTS)]]))
        together.append(await _constrained(
            engine, [SESSION_PROMPTS[(index + i) % len(SESSION_PROMPTS)] for i in range(count)]))
    row = {"sessions": count,
           "alone_tokens_per_s": statistics.median(r["tokens_per_s"] for r in alone),
           "together_tokens_per_s": statistics.median(r["tokens_per_s"] for r in together),
           "together_tokens": together[-1]["tokens"]}
    row["ratio_per_round"] = [t["tokens_per_s"] / a["tokens_per_s"] for a, t in zip(
        alone, together, strict=True)]
    row["ratio"] = statistics.median(row["ratio_per_round"])
    log(f"  {count} sessions at once: {row['together_tokens_per_s']:.1f} tok/s in all, one "
        f"alone {row['alone_tokens_per_s']:.1f} tok/s (x{row['ratio']:.2f})")
    return row


async def section(engine: Engine, engine_kind: str, quick: bool,
                  log: Callable[[str], None]) -> dict[str, Any] | None:
    """The bench's batching figures, or None where the engine does not batch."""
    if engine_kind != "cpu" or not batching_engine(engine):
        return None
    rounds = 3 if quick else 5
    log(f"batching, max {CLICK_TOKENS} tokens a run, max_batch {engine.max_batch}:")
    return {"max_batch": engine.max_batch, "click": await click(engine, rounds, log),
            "sessions": await sessions(engine, rounds, log)}


def print_section(report: dict[str, Any]) -> None:
    section = report.get("batching")
    if not section:
        return
    row = section["click"]
    print(f"\nbatching (max_batch {section['max_batch']}): one click, both sides "
          f"({row['tokens'][0]} + {row['tokens'][1]} tokens): one at a time "
          f"{row['serial_s']:.2f} s, batched {row['batched_s']:.2f} s, ratio {row['ratio']:.3f} "
          f"(rounds {min(row['ratio_per_round']):.3f}-{max(row['ratio_per_round']):.3f})")
    row = section["sessions"]
    print(f"  {row['sessions']} sessions' constrained runs at once: "
          f"{row['together_tokens_per_s']:.1f} tok/s in all against "
          f"{row['alone_tokens_per_s']:.1f} alone (x{row['ratio']:.2f}, rounds "
          f"{min(row['ratio_per_round']):.2f}-{max(row['ratio_per_round']):.2f})")
