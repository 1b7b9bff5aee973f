"""Continuous batching in the CPU engine (playground.engines.cpu_batch), on the real
SmolLM2-135M: a sequence decodes the same tokens in a batch as alone, keeps its own
constraint, and leaves the batch (a Stop, its end) without disturbing the others."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from playground.core.constraints import from_text
from playground.core.settings import SamplingSettings
from playground.judging.judge import judge_blocking

pytestmark = pytest.mark.slow

# (mode, constraint, prompt): one of each mode, and free text (constraint None)
REQUESTS = [
    ("choice", "positive\nnegative\nneutral", "Is 'I loved it' positive or negative?"),
    ("regex", r"[A-Z][a-z]+ [0-9]{2,4}", "Name a car and a year."),
    ("json", json.dumps({"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"]}), "A person as JSON."),
    ("grammar", 'start: "SELECT " NAME " FROM " NAME\nNAME: /[a-z]+/', "Write SQL."),
    (None, None, "Tell me about the sea."),
]


@contextlib.contextmanager
def batch_of(engine, size: int):
    """The engine with at most `size` sequences a step, for this block."""
    before = engine.decoder.max_batch
    engine.decoder.max_batch = size
    try:
        yield
    finally:
        engine.decoder.max_batch = before


async def _one(engine, request, settings: SamplingSettings, stop_after: int | None = None
               ) -> tuple[list[int], str | None]:
    mode, constraint, prompt = request
    compiled = from_text(mode, constraint) if mode else None
    ids: list[int] = []
    reason = None
    stream = engine.stream(prompt, compiled, settings)
    async with contextlib.aclosing(stream):
        async for chunk in stream:
            ids += chunk.token_ids
            if chunk.done:
                reason = chunk.finish_reason
            if stop_after is not None and len(ids) >= stop_after:
                break  # what a Stop does: the stream is closed
    return ids, reason


def _all(engine, requests, settings, stop_after=None):
    async def run():
        return await asyncio.gather(*(_one(engine, request, settings, stops)
                                      for request, stops in zip(
                                          requests, stop_after or [None] * len(requests),
                                          strict=True)))
    return asyncio.run(run())


def _alone(engine, requests, settings):
    with batch_of(engine, 1):
        return [asyncio.run(_one(engine, request, settings)) for request in requests]


@pytest.mark.parametrize("settings", [SamplingSettings(max_tokens=24, temperature=0),
                                      SamplingSettings(max_tokens=24, temperature=0.9,
                                                       seed=7)], ids=["greedy", "seeded"])
def test_a_batch_decodes_what_each_sequence_decodes_alone(embedded_engine, settings):
    alone = _alone(embedded_engine, REQUESTS, settings)
    embedded_engine.decoder.largest_step = 0
    with batch_of(embedded_engine, len(REQUESTS)):
        together = _all(embedded_engine, REQUESTS, settings)
    assert embedded_engine.decoder.largest_step > 1, "the requests never shared a step"
    assert together == alone


def test_each_sequence_keeps_its_own_constraint(embedded_engine):
    """Five at once, each of another mode: every constrained output fits its own format."""
    with batch_of(embedded_engine, len(REQUESTS)):
        results = _all(embedded_engine, REQUESTS, SamplingSettings(max_tokens=48))
    for (mode, constraint, _), (ids, reason) in zip(REQUESTS, results, strict=True):
        if mode is None:
            continue
        text = embedded_engine._decode(ids)
        verdict = judge_blocking(from_text(mode, constraint), text, reason)
        assert verdict.status in ("valid", "truncated"), (mode, text, verdict)


def test_a_stop_ends_one_sequence_and_leaves_the_others_alone(embedded_engine):
    settings = SamplingSettings(max_tokens=24)
    alone = _alone(embedded_engine, REQUESTS, settings)
    with batch_of(embedded_engine, len(REQUESTS)):
        together = _all(embedded_engine, REQUESTS, settings,
                        stop_after=[None, 3, None, None, 2])
    for index in (0, 2, 3):
        assert together[index] == alone[index]
    for index, kept in ((1, 3), (4, 2)):  # stopped: what came before the Stop is its start
        assert together[index][0][:kept] == alone[index][0][:kept]


def test_more_sequences_than_the_cap_wait_their_turn(embedded_engine):
    settings = SamplingSettings(max_tokens=8)
    alone = _alone(embedded_engine, REQUESTS, settings)
    embedded_engine.decoder.largest_step = 0
    with batch_of(embedded_engine, 2):
        together = _all(embedded_engine, REQUESTS, settings)
    assert embedded_engine.decoder.largest_step == 2
    assert together == alone


def test_inspected_distributions_are_the_same_in_a_batch(embedded_engine):
    async def dists(engine, request):
        mode, constraint, prompt = request
        stream = engine.stream(prompt, from_text(mode, constraint), SamplingSettings(
            max_tokens=12), inspect=True)
        async with contextlib.aclosing(stream):
            return [chunk.distributions async for chunk in stream if chunk.done][0]

    async def both():
        return await asyncio.gather(*(dists(embedded_engine, r) for r in REQUESTS[:3]))

    with batch_of(embedded_engine, 1):
        alone = [asyncio.run(dists(embedded_engine, r)) for r in REQUESTS[:3]]
    with batch_of(embedded_engine, 3):
        together = asyncio.run(both())
    assert together == alone


@pytest.mark.parametrize("settings", [SamplingSettings(max_tokens=16, temperature=0),
                                      SamplingSettings(max_tokens=16, temperature=0.9,
                                                       seed=3)], ids=["greedy", "seeded"])
def test_both_sides_of_a_click_share_one_prefill_and_decode_as_alone(embedded_engine,
                                                                    settings):
    """A click's two runs send one prompt: prefilled once, each side gets a cache of its
    own (a step grows it in place), and each decodes what it decodes alone."""
    prompt = "Describe a red car."
    sides = [("json", REQUESTS[2][1], prompt), (None, None, prompt)]
    alone = _alone(embedded_engine, sides, settings)
    before = embedded_engine.decoder.prefills
    with batch_of(embedded_engine, 2):
        together = _all(embedded_engine, sides, settings)
    assert embedded_engine.decoder.prefills - before == 1
    assert together == alone
    assert together[0] != together[1]  # the constrained side took its own way
