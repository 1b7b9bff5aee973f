"""What one click does: check the input, run constrained and unconstrained, time, judge.

This is the one place that measures wall-clock time, so every engine and every caller
(UI, API, CLI, benchmarks) reports the same quantities the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import ValidationError

from playground.constraints import Constraint, ConstraintError, from_text
from playground.engines.base import Engine, SamplingSettings
from playground.limits import InputError, LimitError  # noqa: F401 (shared with callers)
from playground.validation import validate


@dataclass
class RunResult:
    text: str = ""
    verdict: str = "running"
    errors: list[str] = field(default_factory=list)
    prompt_tokens: int | None = None
    output_tokens: int = 0
    latency_s: float | None = None
    ttft_s: float | None = None
    # Decode speed: tokens after the first, over the time after the first token.
    tokens_per_s: float | None = None
    compile_s: float | None = None
    finish_reason: str | None = None
    engine_timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_settings(options: dict[str, Any] | None) -> SamplingSettings:
    try:
        return SamplingSettings.model_validate(options or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
        raise InputError(f"options: {problems}") from None


def parse_constraint(mode: str, text: str, engine: Engine | None = None
                     ) -> tuple[Constraint, list[str]]:
    """The constraint and its warnings; InputError says what is wrong and where.

    With a loaded `engine`, also what that engine's compiler says of it.
    """
    try:
        constraint = from_text(mode, text)
    except ConstraintError as exc:
        raise InputError(str(exc)) from None
    warnings = list(constraint.warnings)
    if engine is not None:
        warnings += engine_check(engine, constraint)
    return constraint, warnings


def engine_check(engine: Engine, constraint: Constraint) -> list[str]:
    try:
        return engine.check(constraint)
    except ConstraintError as exc:
        raise InputError(str(exc)) from None


async def stream_run(engine: Engine, prompt: str, constraint: Constraint | None,
                     settings: SamplingSettings, judge_by: Constraint
                     ) -> AsyncIterator[RunResult]:
    """Yield a growing RunResult as text arrives; the last one carries the verdict."""
    result = RunResult()
    start = time.perf_counter()
    first_token_at: float | None = None
    try:
        async for chunk in engine.stream(prompt, constraint, settings):
            now = time.perf_counter()
            if first_token_at is None and (chunk.output_tokens or chunk.text):
                first_token_at = now
                result.ttft_s = now - start
            result.text += chunk.text
            result.output_tokens = max(result.output_tokens, chunk.output_tokens)
            if chunk.done:
                result.finish_reason = chunk.finish_reason
                result.prompt_tokens = chunk.prompt_tokens
                result.compile_s = chunk.compile_s
                result.engine_timings = chunk.engine_timings
                error = chunk.error
                break
            yield result
        else:
            error = "the engine ended the stream without finishing"
    except Exception as exc:  # an engine failure is a result to show, not a crash
        error = f"{type(exc).__name__}: {exc}"
    end = time.perf_counter()
    result.latency_s = end - start
    if first_token_at is not None and result.output_tokens > 1 and end > first_token_at:
        result.tokens_per_s = (result.output_tokens - 1) / (end - first_token_at)
    if error:
        result.finish_reason = "error"
    verdict = validate(judge_by, result.text, result.finish_reason, error)
    result.verdict, result.errors = verdict.status, verdict.errors
    yield result


async def prepare(engine: Engine, mode: str, constraint_text: str,
                  options: dict[str, Any] | None
                  ) -> tuple[Constraint, list[str], SamplingSettings]:
    """Check a request's input, then wait for the engine and ask it too.

    What needs no engine fails first, before any wait for the model to load.
    """
    settings = parse_settings(options)
    constraint, warnings = parse_constraint(mode, constraint_text)
    await engine.wait_ready()
    return constraint, warnings + engine_check(engine, constraint), settings


async def stream_pair(engine: Engine, prompt: str, constraint: Constraint,
                      settings: SamplingSettings
                      ) -> AsyncIterator[tuple[RunResult, RunResult]]:
    """Constrained and unconstrained runs of one click, same prompt and settings.

    Both go to the engine together where it batches (vLLM); one after the other where
    it runs one request at a time (the CPU model), so each is timed on its own.
    """
    await engine.wait_ready()
    latest = [RunResult(), RunResult()]
    runs = [stream_run(engine, prompt, constraint, settings, constraint),
            stream_run(engine, prompt, None, settings, constraint)]
    if not engine.concurrent:
        for index, run in enumerate(runs):
            async for snapshot in run:
                latest[index] = snapshot
                yield latest[0], latest[1]
        return
    queue: asyncio.Queue[tuple[int, RunResult | None]] = asyncio.Queue()

    async def pump(index: int) -> None:
        try:
            async for snapshot in runs[index]:
                await queue.put((index, snapshot))
        finally:
            await queue.put((index, None))

    tasks = [asyncio.create_task(pump(index)) for index in range(2)]
    try:
        running = 2
        while running:
            index, snapshot = await queue.get()
            if snapshot is None:
                running -= 1
                continue
            latest[index] = snapshot
            yield latest[0], latest[1]
    finally:
        for task in tasks:
            task.cancel()


async def run_request(engine: Engine, mode: str, constraint_text: str, prompt: str,
                      options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole run as one JSON-ready object (the API, the CLI and benchmarks use it)."""
    final: dict[str, Any] = {}
    async for update in stream_request(engine, mode, constraint_text, prompt, options):
        final = update
    return final


async def stream_request(engine: Engine, mode: str, constraint_text: str, prompt: str,
                         options: dict[str, Any] | None = None
                         ) -> AsyncIterator[dict[str, Any]]:
    if not prompt.strip():
        raise InputError("prompt: write a prompt first")
    constraint, warnings, settings = await prepare(engine, mode, constraint_text, options)
    async for constrained, free in stream_pair(engine, prompt, constraint, settings):
        yield {"mode": mode, "engine": engine.info.as_dict(), "warnings": warnings,
               "constrained": constrained.as_dict(), "unconstrained": free.as_dict()}
