"""Odd tokenization (playground.run.tokenization): a constrained output's ids against the
tokenizer's own encoding of its text."""

from __future__ import annotations

import asyncio

import pytest

from playground.run.tokenization import compare, warning

EOS = 2


@pytest.mark.parametrize(("output", "canonical", "expected"), [
    ([5, 6, 7], [5, 6, 7], (True, 3, None)),
    ([5, 6, 7, EOS], [5, 6, 7], (True, 3, None)),  # the end-of-sequence token left out
    ([5, 9, 9, 7, EOS], [5, 6, 7], (False, 4, 1)),
    ([9, 9], [5], (False, 2, 0)),
    ([5, 6], [5, 6, 7], (False, 2, 2)),  # a prefix: differs where it stops
    ([], [], (True, 0, None)),
])
def test_compare(output, canonical, expected):
    found = compare(output, canonical, {EOS})
    assert (found.canonical, found.tokens, found.first_difference) == expected
    assert found.canonical_tokens == len(canonical)
    assert (warning(found) is None) is found.canonical


def test_the_warning_says_what_happened_and_what_to_try():
    line = warning(compare([1, 1, 1, 1], [3], set()))
    assert "4 tokens" in line and "in 1" in line and "leading space" in line
    assert "\n" not in line


def test_the_verdict_area_and_batch_totals_show_it():
    from playground.run.batch import BatchResult
    from playground.run.result import RunResult
    from playground.web.page import verdict_html

    odd = RunResult(text="Strongly agree", verdict="valid",
                    tokenization=compare([1, 2, 3, 4], [7], set()))
    plain = RunResult(text="no", verdict="valid", tokenization=compare([7], [7], set()))
    assert "Odd tokenization" in verdict_html(odd.as_dict())
    assert "Odd tokenization" not in verdict_html(plain.as_dict())
    assert "Odd tokenization" not in verdict_html(RunResult(verdict="valid").as_dict())
    batch = BatchResult(["a", "b", "c"], [odd, plain, RunResult(verdict="valid")])
    assert batch.summarize()["odd_tokenization"] == 1


@pytest.mark.slow
def test_the_cpu_model_is_told_when_a_choice_was_spelled_out(embedded_engine):
    """The issue's case: SmolLM2 spelled "Strongly agree" out letter by letter."""
    from playground.run.service import run_request

    spelled = asyncio.run(run_request(
        embedded_engine, "choice", "Strongly agree\nStrongly disagree\nNeutral",
        "Do you agree that cats are great?", {"max_tokens": 16}))
    assert spelled["constrained"]["tokenization"]["canonical"] is False
    assert spelled["constrained"]["tokenization"]["tokens"] > \
        spelled["constrained"]["tokenization"]["canonical_tokens"]
    assert spelled["unconstrained"]["tokenization"] is None  # a free run is not judged so
    natural = asyncio.run(run_request(
        embedded_engine, "choice", "positive\nnegative",
        "Is 'I loved it' positive or negative?", {"max_tokens": 8}))
    assert natural["constrained"]["tokenization"]["canonical"] is True


def test_a_bursts_checks_share_few_batched_encodes():
    """128 results finishing together: their checks reach the batched encoder together
    (each holds a thread until its batch is done, so few threads meant batches of four)."""
    from types import SimpleNamespace

    from playground.engines.batched_encode import BatchedEncoder
    from playground.run.tokenization import canonical_ids

    batches: list[int] = []

    def encode_batch(texts: list[str]) -> list[list[int]]:
        batches.append(len(texts))
        return [[len(text)] for text in texts]

    # A wide gathering window: every thread the pool has joins the first batches.
    encoder = BatchedEncoder(encode_batch, gather_s=0.3)
    engine = SimpleNamespace(text_token_ids=encoder.encode)

    async def burst() -> list[list[int] | None]:
        return await asyncio.gather(*(canonical_ids(engine, "x" * i) for i in range(128)))

    assert asyncio.run(burst()) == [[i] for i in range(128)]
    assert sum(batches) == 128 and len(batches) <= 3, batches
