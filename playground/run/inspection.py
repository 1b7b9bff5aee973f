"""The token inspector's work after a click's two runs: each run's strip (the model's own
distributions from the engine, replayed through the constraint's matcher) and, as an
option, where xgrammar's and llguidance's masks differ along the constrained output.

Both run after the runs finished, so they never slow the decode the page times; each is
timed here on its own (`inspect_s`, `mask_diff.compare_s`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from playground.core import limits
from playground.core.constraints import Constraint
from playground.engines.base import Engine, SamplingSettings
from playground.errors import ConstraintError
from playground.run.result import InspectedToken, InspectSummary, MaskComparison, RunResult

log = logging.getLogger(__name__)


async def inspect_pair(engine: Engine, prompt: str, settings: SamplingSettings,
                       constraint: Constraint, constrained: RunResult, free: RunResult
                       ) -> None:
    """The token inspector's strips of both runs, after they finished.

    Each run's unconstrained distributions come from the engine (recorded while decoding, or
    recomputed by one prefill); its replay through the constraint's matcher and the
    decoding of token texts run in a worker thread. Each run's `inspect_s` is the time of
    its own inspection; both go to the engine together where it batches.
    """
    from playground.run import token_inspector as inspector

    tokenizer = getattr(engine, "tokenizer", None)
    backend = engine.matcher_backend if engine.matcher_backend == "guidance" else "xgrammar"

    # The strips as the inspector builds them (dicts), for its means and counts; each
    # result holds them as the model's tokens.
    strips: list[list[dict[str, Any]] | None] = [None, None]

    async def one(index: int, result: RunResult, is_constrained: bool) -> None:
        token_ids = result._token_ids
        if token_ids is None or result.finish_reason not in ("stop", "length"):
            return  # an engine error or a stopped run: nothing whole to inspect
        start = time.perf_counter()
        try:
            dists = result._distributions
            if dists is None:
                dists = await engine.inspect_distributions(prompt, settings, token_ids)
            matcher = await asyncio.to_thread(inspector.make_matcher, constraint, tokenizer,
                                              backend, engine.any_whitespace)
            side = await asyncio.to_thread(inspector.inspect_side, matcher, tokenizer,
                                           token_ids, dists, is_constrained)
            tokens = [InspectedToken.model_validate(token) for token in side.tokens]
            result.tokens, result.left_format_at = tokens, side.left_format_at
            strips[index] = side.tokens
        except Exception as exc:  # the runs stand; the inspector says why it has nothing
            log.exception("token inspection failed")
            result.inspect_error = f"{type(exc).__name__}: {exc}"
        result.inspect_s = time.perf_counter() - start

    if engine.concurrent:
        await asyncio.gather(one(0, constrained, True), one(1, free, False))
    else:
        await one(0, constrained, True)
        await one(1, free, False)
    means = inspector.mean_logprob(strips[0]), inspector.mean_logprob(strips[1])
    for result, strip in zip((constrained, free), strips, strict=True):
        if strip is not None:
            result.inspect_summary = InspectSummary.model_validate(
                inspector.summarize(strip, *means, backend))


async def compare_backends(engine: Engine, constraint: Constraint, result: RunResult) -> None:
    """The inspector's "compare backends": the constrained run's tokens replayed through
    xgrammar and llguidance on the CPU (`playground.doctor.mask_diff`), each step where
    their allowed sets differ in `result.mask_diff`. Bounded by the compile limit: past it
    the steps compared so far stand, marked out of time."""
    from playground.doctor.mask_diff import compare_masks

    token_ids = result._token_ids
    if token_ids is None or result.finish_reason not in ("stop", "length"):
        return  # as the strip: only a whole run is replayed
    start = time.perf_counter()
    try:
        found = await asyncio.to_thread(
            compare_masks, constraint, getattr(engine, "tokenizer", None), token_ids,
            any_whitespace=engine.any_whitespace,
            time_limit_s=limits.active().compile_timeout_s)
        result.mask_diff = MaskComparison.model_validate(found.as_dict())
    except ConstraintError as exc:  # a backend refuses the constraint: no mask to compare
        result.mask_diff = MaskComparison(error=str(exc))
    except Exception as exc:  # the runs stand; the comparison says why it has nothing
        log.exception("mask comparison failed")
        result.mask_diff = MaskComparison(error=f"{type(exc).__name__}: {exc}")
    result.mask_diff.compare_s = time.perf_counter() - start
