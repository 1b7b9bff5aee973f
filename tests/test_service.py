"""The click path (check, run both, time, judge) on the fake engine."""

import asyncio

import pytest

from playground.engines.base import Chunk
from playground.service import InputError, run_request, stream_request

SCHEMA = '{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}'


def test_constrained_and_unconstrained_are_judged_by_the_same_constraint(fake_engine):
    fake_engine.enqueue('{"a": 1}', "Sure! Here is JSON")
    result = asyncio.run(run_request(fake_engine, "json", SCHEMA, "give json", {}))
    assert result["constrained"]["verdict"] == "valid"
    assert result["unconstrained"]["verdict"] == "invalid"
    assert result["unconstrained"]["errors"][0].startswith("not JSON")
    (_, constraint, _), (_, free, _) = fake_engine.requests
    assert constraint is not None and free is None


def test_result_has_the_documented_fields(fake_engine):
    fake_engine.enqueue("yes", "no")
    result = asyncio.run(run_request(fake_engine, "choice", "yes\nno", "q?", {"max_tokens": 4}))
    assert set(result) == {"mode", "engine", "warnings", "constrained", "unconstrained"}
    assert set(result["constrained"]) >= {
        "text", "verdict", "errors", "prompt_tokens", "output_tokens", "latency_s", "ttft_s",
        "tokens_per_s", "compile_s", "finish_reason"}
    assert fake_engine.requests[0][2].max_tokens == 4


def test_length_finish_is_truncated_and_engine_error_is_error(fake_engine):
    fake_engine.enqueue(Chunk(text="ye", finish_reason="length"),
                        Chunk(text="", finish_reason="error", error="vLLM: bad grammar"))
    result = asyncio.run(run_request(fake_engine, "choice", "yes\nno", "q?", {}))
    assert result["constrained"]["verdict"] == "truncated"
    assert result["unconstrained"]["verdict"] == "error"
    assert result["unconstrained"]["errors"] == ["vLLM: bad grammar"]


def test_streaming_yields_growing_text(fake_engine):
    fake_engine.enqueue("one two three", "x")

    async def collect():
        return [u async for u in stream_request(fake_engine, "regex", r"[a-z ]+", "p", {})]

    updates = asyncio.run(collect())
    texts = [u["constrained"]["text"] for u in updates]
    assert texts[0] == "one" and texts[-1] == "one two three"
    assert updates[-1]["constrained"]["verdict"] == "valid"
    assert updates[0]["constrained"]["verdict"] == "running"


@pytest.mark.parametrize(
    ("mode", "constraint", "prompt", "options", "message"),
    [
        ("regex", "a(", "p", {}, "regex: missing )"),
        ("json", "{", "p", {}, "line 1, column 2"),
        ("choice", "a", "  ", {}, "write a prompt"),
        ("choice", "a", "p", {"max_tokens": 0}, "max_tokens"),
        ("choice", "a", "p", {"bogus": 1}, "bogus"),
    ],
)
def test_bad_input_is_an_input_error(fake_engine, mode, constraint, prompt, options, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        asyncio.run(run_request(fake_engine, mode, constraint, prompt, options))
    assert fake_engine.requests == []


def test_concurrent_engine_gets_both_requests_together():
    from playground.engines.fake import FakeEngine

    engine = FakeEngine(delay_s=0.01)
    engine.load()
    engine.enqueue("a b c d", "e f g h")

    async def collect():
        return [u async for u in stream_request(engine, "regex", ".*", "p", {})]

    updates = asyncio.run(collect())
    # Interleaved updates: the unconstrained run streamed before the constrained ended.
    first_free = next(i for i, u in enumerate(updates) if u["unconstrained"]["text"])
    last_constrained = max(i for i, u in enumerate(updates)
                           if u["constrained"]["verdict"] == "running")
    assert first_free < last_constrained


@pytest.mark.parametrize(
    ("system", "expected"),
    [("", [{"role": "user", "content": "hi"}]),
     ("Be brief.", [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "hi"}])],
)
def test_chat_messages(system, expected):
    from playground.engines.base import SamplingSettings, chat_messages

    assert chat_messages("hi", SamplingSettings(system_prompt=system)) == expected
