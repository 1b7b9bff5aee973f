"""What one click does: check the input, run constrained and unconstrained, time, judge.

This is the one place that measures wall-clock time, so every engine and every caller
(UI, API, CLI, benchmarks) reports the same quantities the same way.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from pydantic import ValidationError

from playground import log as logs
from playground.core import limits
from playground.core.constraints import Constraint, ToolCalls
from playground.core.settings import RequestOptions, SamplingSettings, split_options
from playground.core.tools import calls_found
from playground.doctor import lenient as lenient_mod
from playground.doctor import sent as sent_mod
from playground.engines.base import Chunk, Engine
from playground.errors import (
    ConstraintError,
    EngineDead,
    InputError,
    RequestTimeout,
)
from playground.judging.judge import build_constraint, judge
from playground.run import inspection, tokenization, watchdog
from playground.run.inputs import check_context, check_options, check_request
from playground.run.result import STOPPED, RunResult, ToolCallsFound
from playground.run.streaming import coalesce

log = logging.getLogger(__name__)


def parse_settings(options: dict[str, Any] | None) -> SamplingSettings:
    """The sampling settings of an options object (its request options are left out)."""
    return _validated(SamplingSettings, split_options(options or {})[0])


def parse_request_options(options: dict[str, Any] | None) -> RequestOptions:
    return _validated(RequestOptions, split_options(options or {})[1])


def _validated(model: Any, data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
        raise InputError(f"options: {problems}") from None


def parse_constraint(mode: str, text: str, engine: Engine | None = None
                     ) -> tuple[Constraint, list[str]]:
    """The constraint and its warnings; InputError says what is wrong and where.

    With a loaded `engine`, also what that engine's compiler says of it.
    """
    constraint = build_constraint(mode, text)  # within the size and compile limits
    warnings = list(constraint.warnings)
    if engine is not None:
        warnings += engine_check(engine, constraint)
    return constraint, warnings


def engine_check(engine: Engine, constraint: Constraint) -> list[str]:
    try:
        return engine.check(constraint)
    except ConstraintError as exc:
        raise InputError(str(exc)) from None


# Long on purpose (~70 lines): this is the one place that times a run; every clock read
# (first token, decode, judging, inspection) stays in one function, in the order it happens.
async def stream_run(engine: Engine, prompt: str, constraint: Constraint | None,
                     settings: SamplingSettings, judge_by: Constraint, inspect: bool = False
                     ) -> AsyncIterator[RunResult]:
    """Yield a growing RunResult as text arrives; the last one carries the verdict.

    `inspect`: also keep the token ids (and distributions, where the engine records them)
    for `inspect_pair`.
    """
    result = RunResult()
    extra: dict[str, Any] = {}
    token_ids: list[int] = []  # also for the tokenization check of a constrained run
    if inspect:  # the same list the loop extends: no attribute lookup per chunk
        result._token_ids, extra = token_ids, {"inspect": True}
    start = time.perf_counter()
    first_token_at: float | None = None
    first_tokens, last_token_at = 0, None  # tokens in the first delta; when the last came
    try:
        # Closed at once when this run is stopped, so the engine drops the request (vLLM
        # aborts it, the CPU loop ends at its next token) instead of running to max tokens.
        async with aclosing(engine.stream(prompt, constraint, settings, **extra)) as chunks:
            async for chunk in within(chunks, start + limits.active().request_timeout_s):
                now = time.perf_counter()
                if first_token_at is None and (chunk.output_tokens or chunk.text):
                    first_token_at = now
                    first_tokens = chunk.output_tokens
                    result.ttft_s = now - start
                result.text += chunk.text
                token_ids.extend(chunk.token_ids)
                if chunk.output_tokens > result.output_tokens:
                    result.output_tokens, last_token_at = chunk.output_tokens, now
                if chunk.done:
                    result.finish_reason = chunk.finish_reason
                    result.prompt_tokens = chunk.prompt_tokens
                    result.compile_s = chunk.compile_s
                    result.engine_timings = chunk.engine_timings
                    result._distributions = chunk.distributions
                    error = chunk.error
                    break
                yield result
            else:
                error = "the engine ended the stream without finishing"
    except (asyncio.CancelledError, GeneratorExit):
        # Whoever holds this (same) result object sees it labelled; nothing more is yielded.
        _time(result, start, first_token_at, first_tokens, last_token_at)
        mark_stopped(result)
        raise
    except RequestTimeout as exc:  # the partial output stays, labelled like a Stop
        _time(result, start, first_token_at, first_tokens, last_token_at)
        mark_stopped(result, str(exc))
        yield result
        return
    except EngineDead as exc:  # logged once, when the engine was marked failed
        error = str(exc)
    except Exception as exc:  # an engine failure is a result to show, not a crash
        log.exception("the engine failed a request")
        error = f"{type(exc).__name__}: {exc}"
    _time(result, start, first_token_at, first_tokens, last_token_at)
    if error:
        result.finish_reason = "error"
    checks_tokens = (constraint is not None and bool(token_ids)
                     and result.finish_reason in ("stop", "length"))
    # Side by side: both wait on other threads (a validation worker, the tokenizer), and
    # after a burst every request's result waited for their sum (issue 22's tail at 128).
    verdict, canonical = await asyncio.gather(
        judge(judge_by, result.text, result.finish_reason, error, engine.matcher_backend,
              engine.any_whitespace),
        tokenization.canonical_ids(engine, result.text) if checks_tokens else _nothing())
    result.verdict, result.errors = verdict.status, verdict.errors
    if isinstance(judge_by, ToolCalls):
        result.tool_calls = ToolCallsFound.model_validate(
            calls_found(result.text, verdict.errors))
    # Constrained output that does not fit its constraint (or left it before max tokens)
    # means the engine did not enforce it: said loudly, never passed off as "truncated".
    result.constraint_escaped = await _escaped(engine, constraint, judge_by, settings,
                                               result, verdict)
    if canonical is not None:
        result.tokenization = tokenization.compare(token_ids, canonical,
                                                   engine.special_token_ids)
    yield result


async def _nothing() -> None:
    return None


def stop_that_cut(text: str, finish_reason: str | None, stops: list[str]) -> str | None:
    """The user's stop string that ended this output, if one did (every engine keeps the
    stop string in the text)."""
    if finish_reason != "stop":
        return None
    return next((stop for stop in stops if stop and text.endswith(stop)), None)


async def _escaped(engine: Engine, sent: Constraint | None, judge_by: Constraint,
                   settings: SamplingSettings, result: RunResult, verdict: Any) -> bool:
    """Whether the engine let through what the constraint it was *sent* forbids.

    Judged against what was sent, not the full constraint: a lenient run leaves keywords
    out on purpose, and breaking one of those is reported as not enforced, not as an
    escape. Output ended by a user's stop string was cut by the user: it escaped only if
    it had already left the language (as for a cut at max tokens); else its verdict says
    which stop string cut it."""
    if sent is None or verdict.status != "invalid":
        return False
    cut_by = stop_that_cut(result.text, result.finish_reason, settings.stop)
    if sent is judge_by and cut_by is None:
        return True
    again = await judge(sent, result.text, "length" if cut_by else result.finish_reason,
                        None, engine.matcher_backend, engine.any_whitespace)
    if cut_by is not None and again.status == "truncated":
        result.verdict = "truncated"
        result.errors = [f"cut by the stop string {cut_by!r} before the output was complete "
                         "(the engine stopped where you asked)"]
    return again.status == "invalid"


async def within(chunks: AsyncIterator[Chunk], deadline: float) -> AsyncIterator[Chunk]:
    """The engine's chunks until `deadline` (perf_counter), then RequestTimeout; a wait
    for the next chunk is bounded too, so a stalled engine cannot hold the request."""
    while True:
        # asyncio.timeout, not wait_for: the wait stays in this task, so a Stop (this task
        # cancelled) reaches the engine's generator and closes it; wait_for would run it in
        # a task of its own, which Python 3.11 can leave half-cancelled.
        try:
            async with asyncio.timeout(deadline - time.perf_counter()):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestTimeout(limits.active().message("request_timeout_s")) from None
        yield chunk


def _time(result: RunResult, start: float, first_token_at: float | None, first_tokens: int,
          last_token_at: float | None) -> None:
    result.latency_s = time.perf_counter() - start
    result.tokens_per_s = decode_rate(result, first_token_at, first_tokens, last_token_at)


# No single request decodes faster than this on any engine the playground drives (an H100
# runs a 135M model at ~1,000 tokens/s per request): a higher figure is a measurement
# artefact, such as several tokens arriving in one delta, and is not shown.
MAX_TOKENS_PER_S = 10_000.0


def decode_rate(result: RunResult, first_token_at: float | None, first_tokens: int,
                last_token_at: float | None) -> float | None:
    """Decode tokens/s, or None where nothing honest can be said.

    The engine's own first-to-last token span where it reports one (vLLM: from its request
    stats). Otherwise only tokens that arrived after the first delta count, over the time
    from that delta to the last: an engine that delivers several tokens at once (vLLM
    under load) would make "tokens after the first over the time after the first" divide
    by almost nothing.
    """
    engine_span = result.engine_timings.get("vllm_decode_s")
    if engine_span is not None and result.output_tokens > 1:
        tokens, span = result.output_tokens - 1, engine_span
    elif first_token_at is not None and last_token_at is not None:
        tokens, span = result.output_tokens - first_tokens, last_token_at - first_token_at
    else:
        return None
    if tokens < 1 or span <= 0 or tokens / span > MAX_TOKENS_PER_S:
        return None
    return tokens / span


def mark_stopped(result: RunResult, reason: str = "stopped by user") -> None:
    """Label a run that never finished: its partial text stays, unjudged."""
    if result.verdict == "running":
        result.verdict, result.finish_reason = STOPPED, STOPPED
        started = bool(result.text or result.output_tokens)
        result.errors = [f"{reason}; the output above is partial" if started
                         else f"{reason} before any output"]


def check_before_queue(mode: Any, constraint_text: Any, prompt: Any, options: Any) -> None:
    """Everything that refuses a request without the model: the types and sizes of its
    arguments, its settings and its constraint. InputError (or LimitError) if refused.

    Run before a request waits in the model's queue, so a refusal never waits behind other
    users' runs (the run checks again: the queue may hold it past a change of limits)."""
    options = check_request(mode, constraint_text, prompt, options)
    parse_request_options(options)
    parse_settings(options)
    build_constraint(mode, constraint_text)


def with_tools(settings: SamplingSettings, constraint: Constraint) -> SamplingSettings:
    """A Tool call tab's tools go into the prompt of both runs (the free one too), so the
    two sides differ only in the constraint."""
    if isinstance(constraint, ToolCalls):
        return settings.with_tools(constraint.openai_tools())
    return settings


async def prepare(engine: Engine, mode: str, constraint_text: str,
                  options: dict[str, Any] | None
                  ) -> tuple[Constraint, list[str], SamplingSettings]:
    """Check a request's input, then wait for the engine and ask it too.

    What needs no engine fails first, before any wait for the model to load.
    """
    settings = parse_settings(check_options(options))
    constraint, warnings = await asyncio.to_thread(parse_constraint, mode, constraint_text)
    await engine.wait_ready()
    engine_warnings = await asyncio.to_thread(engine_check, engine, constraint)
    return constraint, warnings + engine_warnings, with_tools(settings, constraint)


async def prepare_lenient(engine: Engine, mode: str, constraint_text: str,
                          options: dict[str, Any] | None
                          ) -> tuple[Constraint, list[str], SamplingSettings, lenient_mod.Lenient]:
    """`prepare` for a lenient run: the engine is asked about (and sent) what its backend
    can enforce of the constraint; the full constraint judges the output."""
    settings = parse_settings(check_options(options))
    constraint, warnings = await asyncio.to_thread(parse_constraint, mode, constraint_text)
    await engine.wait_ready()
    try:  # in a worker process, killed past the compile limit and a margin
        relaxed = await asyncio.to_thread(lenient_mod.bounded_lenient, constraint,
                                          sent_mod.engine_backend(engine),
                                          limits.active().compile_timeout_s)
    except TimeoutError as exc:
        raise InputError(f"lenient: no lenient constraint found: {exc}") from None
    engine_warnings = await asyncio.to_thread(engine_check, engine, relaxed.constraint)
    if relaxed.not_enforced:
        engine_warnings.append(f"lenient run ({relaxed.how}): not enforced: "
                               f"{', '.join(relaxed.not_enforced)}")
    return constraint, warnings + engine_warnings, with_tools(settings, constraint), relaxed


async def stream_pair(engine: Engine, prompt: str, constraint: Constraint,
                      settings: SamplingSettings, live: list[RunResult] | None = None,
                      inspect: bool = False, judge_by: Constraint | None = None
                      ) -> AsyncIterator[tuple[RunResult, RunResult]]:
    """Constrained and unconstrained runs of one click, same prompt and settings.

    Both go to the engine together where it batches (vLLM, the CPU model with
    --cpu-batch 2 or more); one after the other where it runs one sequence at a time, so
    each is timed on its own.
    `live`, if given, always holds the two results, labelled "stopped" after a Stop.
    `judge_by`: the constraint verdicts use, where the engine is sent another (lenient).
    """
    await engine.wait_ready()
    latest = live if live is not None else []
    latest[:] = [RunResult(), RunResult()]
    judge_by = judge_by or constraint
    runs = [stream_run(engine, prompt, constraint, settings, judge_by, inspect),
            stream_run(engine, prompt, None, settings, judge_by, inspect)]
    if not engine.concurrent:
        try:
            for index, run in enumerate(runs):
                async with aclosing(run):
                    async for snapshot in run:
                        latest[index] = snapshot
                        yield latest[0], latest[1]
        finally:
            for result in latest:  # a run stopped before it started
                mark_stopped(result)
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
        # Wait for both runs to leave the engine (vLLM aborts them) before returning.
        await asyncio.gather(*tasks, return_exceptions=True)
        for result in latest:
            mark_stopped(result)


async def run_request(engine: Engine, mode: str, constraint_text: str, prompt: str,
                      options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole run as one JSON-ready object (the API, the CLI and benchmarks use it)."""
    final: dict[str, Any] = {}
    async with aclosing(stream_request(engine, mode, constraint_text, prompt, options,
                                       every_s=math.inf)) as run:
        async for update in run:
            final = update
    return final


async def stream_request(engine: Engine, mode: str, constraint_text: str, prompt: str,
                         options: dict[str, Any] | None = None,
                         live: list[RunResult] | None = None, every_s: float = 0.0
                         ) -> AsyncIterator[dict[str, Any]]:
    """Updates of one click as JSON-ready objects; `live` as in `stream_pair`.

    `every_s`: at most one update per that many seconds while tokens stream, and always
    the last (inf: the first and the last). Building an update copies both results; once
    per token at 128 requests on the H100 it held the GIL enough to cost 15% of vLLM's
    throughput.
    """
    watchdog.watch()  # the server's loop, from its first request on
    options = check_request(mode, constraint_text, prompt, options)
    request = parse_request_options(options)
    inspect = request.inspect or request.compare_backends  # comparing is an inspector option
    if inspect and not engine.inspects:
        option = "inspect" if request.inspect else "compare_backends"
        raise InputError(f"{option}: the engine {engine.info.name} cannot inspect tokens")
    if request.lenient:
        constraint, warnings, settings, relaxed = await prepare_lenient(
            engine, mode, constraint_text, options)
    else:
        constraint, warnings, settings = await prepare(engine, mode, constraint_text, options)
        relaxed = None
    sending = relaxed.constraint if relaxed else constraint
    sent = await asyncio.to_thread(sent_mod.sent, sending, sent_mod.engine_backend(engine),
                                   engine.any_whitespace)
    await check_context(engine, prompt, settings)
    log.info("request: %s constraint of %d characters, prompt %s, max_tokens %d", mode,
             len(constraint_text), logs.prompt(prompt), settings.max_tokens)

    def update(constrained: RunResult, free: RunResult) -> dict[str, Any]:
        out = {"mode": mode, "engine": engine.info.as_dict(), "warnings": warnings,
               "constrained": constrained.as_dict(), "unconstrained": free.as_dict(),
               "sent": sent}
        if relaxed is not None:
            out["lenient"], out["not_enforced"] = relaxed.as_dict(), relaxed.not_enforced
            marked, expected = lenient_mod.mark_not_enforced(
                constraint, constrained.text, constrained.errors, relaxed)
            out["constrained"]["errors"] = marked
            if expected and constrained.finish_reason != "length":
                out["constrained"]["constraint_escaped"] = False
        return out

    pair = stream_pair(engine, prompt, sending, settings, live, inspect,
                       judge_by=constraint)
    # Thinned on a clock, not on arrivals: a state held back is sent when its interval is
    # up, even while nothing new comes (the CPU engine's free run before its first token).
    states = coalesce(pair, every_s) if every_s > 0 else pair
    async with aclosing(states):
        async for constrained, free in states:
            yield update(constrained, free)
    if inspect:
        # The matcher of what the engine was sent: a lenient run's left-out keywords are no
        # place where the output "left the format".
        await inspection.inspect_pair(engine, prompt, settings, sending, constrained, free)
        if request.compare_backends:
            await inspection.compare_backends(engine, sending, constrained)
        yield update(constrained, free)
