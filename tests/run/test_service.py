"""The click path (check, run both, time, judge) on the fake engine."""

import asyncio

import pytest

from playground.core.settings import SamplingSettings
from playground.engines.base import Chunk
from playground.engines.fake import FakeEngine
from playground.errors import InputError
from playground.run.result import INSPECT_FIELDS, RunResult
from playground.run.service import run_request, stream_request

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
    assert set(result) == {"mode", "engine", "warnings", "constrained", "unconstrained",
                           "sent"}
    assert result["sent"]["language"] == "ebnf" and "yes" in result["sent"]["text"]
    assert set(result["constrained"]) >= {
        "text", "verdict", "errors", "prompt_tokens", "output_tokens", "latency_s", "ttft_s",
        "tokens_per_s", "compile_s", "finish_reason"}
    assert fake_engine.requests[0][2].max_tokens == 4


@pytest.mark.parametrize("inspect", [False, True])
def test_the_answer_is_the_live_result_as_a_dict(fake_engine, inspect):
    """One model: what the page holds (and Stop labels) is what the API answers."""
    fake_engine.enqueue("yes", "no")
    live: list[RunResult] = []

    async def last():
        return [u async for u in stream_request(fake_engine, "choice", "yes\nno", "q?",
                                                {"inspect": inspect}, live=live)][-1]

    update = asyncio.run(last())
    assert all(isinstance(result, RunResult) for result in live)
    assert [update["constrained"], update["unconstrained"]] == [r.as_dict() for r in live]
    assert (INSPECT_FIELDS <= set(update["constrained"])) is inspect
    assert not {"token_ids", "_token_ids", "distributions"} & set(update["constrained"])
    if inspect:  # the inspector's dicts, typed as the file model types them
        assert update["constrained"]["tokens"][0]["kind"] in ("forced", "narrowed", "free")
        assert update["constrained"]["inspect_summary"]["tokens"] == len(
            update["constrained"]["tokens"])


def test_a_stop_labels_the_result_in_place_and_a_file_takes_it():
    from playground.run import history
    from playground.run.service import mark_stopped

    result = RunResult(text="par", output_tokens=1)
    mark_stopped(result)
    assert (result.verdict, result.finish_reason) == ("stopped", "stopped")
    assert result.errors == ["stopped by user; the output above is partial"]
    update = {"mode": "choice", "constrained": result.as_dict(),
              "unconstrained": RunResult().as_dict()}
    run = history.record(update, "p", "a", SamplingSettings(), [])
    assert history.loads(history.dumps([run], "run")).runs[0].constrained == result


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
    from playground.core.settings import SamplingSettings, chat_messages

    assert chat_messages("hi", SamplingSettings(system_prompt=system)) == expected


# ---- issue 8: escaped outputs are never "truncated"; rates are honest under load ------------

EMAIL = r"\w+@\w+\.(com|org|net)\n"


@pytest.mark.parametrize(("text", "verdict", "escaped"), [
    ("alan@turing.org\n", "valid", False),
    ("alan@tur", "truncated", False),  # cut, but still on the way to a match
    ("Alan Turing was a British mathematician", "invalid", True),  # cut off the language
])
def test_a_cut_constrained_output_off_the_language_is_an_escape(fake_engine, text, verdict,
                                                                  escaped):
    reason = "stop" if verdict == "valid" else "length"
    fake_engine.enqueue(Chunk(text=text, finish_reason=reason), Chunk(text=text,
                                                                      finish_reason=reason))
    result = asyncio.run(run_request(fake_engine, "regex", EMAIL, "email?", {}))
    constrained, free = result["constrained"], result["unconstrained"]
    assert (constrained["verdict"], constrained["constraint_escaped"]) == (verdict, escaped)
    assert free["verdict"] == verdict and not free["constraint_escaped"]  # free may leave it


def test_invalid_constrained_output_is_flagged_and_counted_in_batches(fake_engine):
    from playground.run.batch import run_batch

    fake_engine.enqueue("maybe", "yes")
    result = asyncio.run(run_request(fake_engine, "choice", "yes\nno", "q?", {}))
    assert result["constrained"]["constraint_escaped"] is True

    async def batch():
        fake_engine.enqueue("maybe", "yes")
        return [b async for b in run_batch(fake_engine, "choice", "yes\nno", ["a", "b"], {})][-1]

    totals = asyncio.run(batch()).summarize()
    assert totals["constraint_escaped"] == 1 and totals["valid"] == 1


class PileEngine(FakeEngine):
    """Delivers a whole output in two deltas microseconds apart, as vLLM does under load."""

    def __init__(self, timings: dict[str, float] | None = None) -> None:
        super().__init__()
        self.timings = timings or {}

    async def stream(self, prompt, constraint, settings):
        yield Chunk(text="a", output_tokens=1)
        yield Chunk(text=" b c", output_tokens=31)
        yield Chunk(text=" d", output_tokens=32, done=True, finish_reason="stop",
                    prompt_tokens=3, engine_timings=self.timings)


@pytest.mark.parametrize(("timings", "rate"), [
    ({}, None),  # 31 tokens in microseconds: no honest rate, shown as "–"
    ({"vllm_decode_s": 0.31}, 100.0),  # the engine's own first-to-last token span
    ({"vllm_decode_s": 1e-6}, None),  # even an engine's figure must be physically possible
])
def test_coalesced_deltas_give_no_absurd_rate(timings, rate):
    engine = PileEngine(timings)
    engine.load()
    results = asyncio.run(run_request(engine, "regex", ".*", "q?", {}))
    for side in ("constrained", "unconstrained"):
        found = results[side]["tokens_per_s"]
        assert found == pytest.approx(rate) if rate else found is None, found


def test_many_concurrent_requests_never_show_an_impossible_rate():
    from playground.run.service import MAX_TOKENS_PER_S

    engine = FakeEngine(delay_s=0.0)
    engine.load()
    engine.enqueue(*[" ".join("w" * 40) for _ in range(128)])

    async def many():
        return await asyncio.gather(*(run_request(engine, "regex", "[w ]*", "q", {})
                                      for _ in range(64)))

    for result in asyncio.run(many()):
        for side in ("constrained", "unconstrained"):
            rate = result[side]["tokens_per_s"]
            assert rate is None or rate <= MAX_TOKENS_PER_S


def test_a_lenient_run_breaking_a_left_out_keyword_is_not_an_escape(fake_engine):
    schema = ('{"type": "object", "properties": {"tags": {"type": "array", "items": '
              '{"type": "string"}, "uniqueItems": true}}, "required": ["tags"]}')
    fake_engine.enqueue('{"tags": ["a", "a"]}', "no json")
    result = asyncio.run(run_request(fake_engine, "json", schema, "tags?", {"lenient": True}))
    constrained = result["constrained"]
    assert constrained["verdict"] == "invalid" and not constrained["constraint_escaped"]


@pytest.mark.parametrize(("text", "escaped"), [
    ('{"a": 1,', False),  # the user's stop string "," cut a valid start: not the engine's fault
    ('{"c": 1,', True),  # already off the schema before the stop string
])
def test_output_cut_by_a_user_stop_string_escapes_only_if_off_the_language(fake_engine, text,
                                                                           escaped):
    two = ('{"type": "object", "properties": {"a": {"type": "integer"}, "b": '
           '{"type": "integer"}}, "required": ["a", "b"]}')
    fake_engine.enqueue(text, text)
    result = asyncio.run(run_request(fake_engine, "json", two, "q", {"stop": [","]}))
    constrained = result["constrained"]
    assert constrained["constraint_escaped"] is escaped
    if escaped:
        assert constrained["verdict"] == "invalid"
    else:  # said as what happened, never as the engine's failure
        assert constrained["verdict"] == "truncated"
        assert constrained["errors"][0].startswith("cut by the stop string ','")
