"""The token inspector: counts against the matcher, overrides, the strip, the option."""

import asyncio
import math
from types import SimpleNamespace

import pytest

from playground.core.constraints import from_text
from playground.engines.fake import END
from playground.engines.vllm_engine import distribution
from playground.errors import InputError
from playground.judging.matcher import Matcher
from playground.run import token_inspector as inspector
from playground.run.service import run_request

TWO_KEYS = ('{"type": "object", "properties": {"name": {"type": "string"}, '
            '"age": {"type": "integer"}}}')


def inspected(engine, mode, constraint, options=None):
    return asyncio.run(run_request(engine, mode, constraint, "q?",
                                   {"inspect": True, **(options or {})}))


def replayed(mode, constraint, text, end=True):
    ids = list(text.encode()) + ([END] if end else [])
    return Matcher.create(from_text(mode, constraint)).replay(ids)


# (mode, constraint, constrained output, free output, kinds expected on the constrained side)
CASES = [
    ("choice", "yes\nno", "yes", "maybe",
     ["narrowed", "forced", "forced", "forced"]),  # 'y' or 'n', then a forced tail
    ("regex", "[0-9]{2}", "42", "Sure",
     ["narrowed", "narrowed", "forced"]),
]


@pytest.mark.parametrize(("mode", "constraint", "out", "free_out", "kinds"), CASES)
def test_counts_are_the_matchers(fake_engine, mode, constraint, out, free_out, kinds):
    fake_engine.enqueue(out, free_out)
    result = inspected(fake_engine, mode, constraint)
    tokens = result["constrained"]["tokens"]
    steps = replayed(mode, constraint, out)
    assert [t["allowed"] for t in tokens] == [s.allowed for s in steps]
    assert [t["kind"] for t in tokens] == kinds
    assert "".join(t["text"] for t in tokens[:-1]) == out and tokens[-1]["text"] == "<end>"
    summary = result["constrained"]["inspect_summary"]
    assert summary["forced"] == kinds.count("forced")
    assert summary["forced"] + summary["narrowed"] + summary["free"] == len(tokens)
    free = result["unconstrained"]
    assert free["left_format_at"] == 0  # its first character is not allowed
    assert free["tokens"][0]["allowed"] is not None and free["tokens"][1]["allowed"] is None
    assert result["constrained"]["left_format_at"] is None


def test_a_json_key_after_brace_quote_is_narrowed(fake_engine):
    text = '{"name": "Ada"}'
    fake_engine.enqueue(text, "no JSON here")
    tokens = inspected(fake_engine, "json", TWO_KEYS)["constrained"]["tokens"]
    assert tokens[2]["text"] == "n" and tokens[2]["kind"] == "narrowed"  # "name" or "age"
    assert [t["allowed"] for t in tokens] == [s.allowed for s in replayed("json", TWO_KEYS,
                                                                          text)]


WEATHER_TOOLS = ('{"tool_choice": "auto", "tools": [{"type": "function", "function": {'
                 '"name": "get_weather", "description": "", "parameters": {"type": "object", '
                 '"properties": {"city": {"type": "string"}}, "required": ["city"]}}}]}')


@pytest.mark.parametrize("before", ["", "Let me look. "])
def test_a_tool_call_is_narrowed_inside_its_tags_and_free_outside(fake_engine, before):
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    fake_engine.enqueue(before + call, "It is sunny.")
    side = inspected(fake_engine, "tool", WEATHER_TOOLS)["constrained"]
    kinds = [t["kind"] for t in side["tokens"]]
    inside = len(before) + len("<tool_call>")  # the trigger itself is free text
    assert set(kinds[:inside]) == {"free"}
    assert "free" not in kinds[inside:len(before) + len(call)]
    assert kinds[-1] == "free"  # after the call, text (or the end) is free again
    name_at = len(before) + call.index("get_weather")
    assert kinds[name_at] == "forced"  # the only tool's name
    assert side["verdict"] == "valid"


@pytest.mark.parametrize(("wants", "overrides"), [
    ("maybe", [True, True, True, True]),  # 'm' is never allowed; then only the tail is
    ("no", [False, True, False, False]),  # 'n' was allowed: the model's pick, no override
    ("", [False, False, False, False]),  # the model wrote what it wanted
])
def test_override_where_the_first_choice_was_not_allowed(fake_engine, wants, overrides):
    fake_engine.wants = wants
    fake_engine.enqueue("yes", wants or "yes")
    result = inspected(fake_engine, "choice", "yes\nno")
    assert [t["override"] for t in result["constrained"]["tokens"]] == overrides
    assert result["constrained"]["inspect_summary"]["overrides"] == sum(overrides)
    assert not any(t["override"] for t in result["unconstrained"]["tokens"])
    first = result["constrained"]["tokens"][0]
    assert first["rank"] == (1 if first["top"][0]["id"] == first["id"] else 2)
    assert math.isclose(first["logprob"], math.log(0.6 if first["rank"] == 1 else 0.2))


def test_mean_logprobs_compare_both_runs(fake_engine):
    fake_engine.wants = "maybe"
    fake_engine.enqueue("yes", "maybe")
    result = inspected(fake_engine, "choice", "yes\nno")
    for side in ("constrained", "unconstrained"):
        summary = result[side]["inspect_summary"]
        assert summary["mean_logprob_constrained"] < summary["mean_logprob_unconstrained"]
        assert summary["backend"] == "xgrammar"
        assert result[side]["inspect_s"] > 0


def test_off_by_default_the_result_is_unchanged(fake_engine):
    fake_engine.enqueue("yes", "no")
    result = asyncio.run(run_request(fake_engine, "choice", "yes\nno", "q?", {}))
    for side in ("constrained", "unconstrained"):
        assert not {"tokens", "inspect_summary", "left_format_at", "inspect_s",
                    "token_ids", "distributions"} & set(result[side])


@pytest.mark.parametrize(("options", "message"), [
    ({"inspect": "perhaps"}, "inspect: Input should be a valid boolean"),
    ({"inspekt": True}, "inspekt: Extra inputs are not permitted"),
])
def test_bad_inspect_option_is_an_input_error(fake_engine, options, message):
    with pytest.raises(InputError, match=message):
        asyncio.run(run_request(fake_engine, "choice", "a\nb", "q?", options))


def test_an_engine_that_cannot_inspect_says_so(fake_engine):
    fake_engine.inspects = False
    with pytest.raises(InputError, match="cannot inspect tokens"):
        inspected(fake_engine, "choice", "a\nb")


def test_an_errored_run_is_not_inspected(fake_engine):
    from playground.engines.base import Chunk

    fake_engine.enqueue(Chunk(text="", finish_reason="error", error="boom"), "x")
    result = inspected(fake_engine, "choice", "yes\nno")
    assert result["constrained"]["tokens"] is None
    assert result["unconstrained"]["tokens"] is not None
    # The page says why that side has no strip, and its inspector time is no "…".
    assert "the engine failed this run" in inspector.strip_html(result["constrained"], True)


def test_a_run_without_a_strip_says_why():
    """Both runs are inspected after both finished: until then a finished run shows "…",
    and a stopped one says it is never replayed (it read as a lost strip)."""
    from playground.web.side_by_side import metrics_table

    waiting = {"verdict": "valid", "finish_reason": "stop", "tokens": None, "inspect_s": None}
    assert inspector.no_strip_reason(waiting) == inspector.INSPECTING
    assert inspector.INSPECTING in inspector.strip_html(waiting, True)
    assert "| token inspector (after the run) | … | – |" in metrics_table(
        waiting, {**waiting, "verdict": "stopped", "finish_reason": "stopped"})
    stopped = {**waiting, "verdict": "stopped", "finish_reason": "stopped"}
    assert "stopped before it finished" in inspector.strip_html(stopped, True)
    assert inspector.strip_html({**waiting, "verdict": "running"}, True) == ""
    assert inspector.strip_html({"verdict": "valid", "finish_reason": "stop"}, True) == ""


def test_strip_html_escapes_token_text(fake_engine):
    fake_engine.enqueue("<b>", "<script>alert(1)</script>")
    result = inspected(fake_engine, "regex", "[<>a-z]+")
    for side, constrained in (("constrained", True), ("unconstrained", False)):
        page = inspector.strip_html(result[side], constrained)
        assert "<script>" not in page and "&lt;" in page
    page = inspector.strip_html(result["unconstrained"], False)
    assert "left the format at token 13" in page  # the "(" of "alert(1)"
    assert page.count('data-index=') == len(result["unconstrained"]["tokens"])


def test_vllm_prompt_logprobs_entry():
    def lp(value, rank):
        return SimpleNamespace(logprob=value, rank=rank, decoded_token="?")

    entry = {5: lp(-0.1, 1), 9: lp(-2.5, 2), 3: lp(-3.0, 3), 7: lp(-4.0, 7)}
    dist = distribution(entry, 7, k=3)
    assert dist.top == [(5, -0.1), (9, -2.5), (3, -3.0)]
    assert (dist.logprob, dist.rank) == (-4.0, 7)


# ---- the CPU model -----------------------------------------------------------------------


def _direct_overrides(engine, prompt, constraint, settings, output_ids):
    """Step the model over the run: where does the masked argmax differ from the raw one?"""
    import xgrammar as xgr

    torch = engine.torch
    compiled, _ = engine.compile(constraint)
    matcher = xgr.GrammarMatcher(compiled)
    bitmask = xgr.allocate_token_bitmask(1, compiled.tokenizer_info.vocab_size)
    found = []
    with torch.inference_mode():
        logits, cache = engine.model(torch.tensor([engine._encode(prompt, settings)]))
        for token in output_ids:
            raw = logits[0].clone()
            masked = logits.clone()
            matcher.fill_next_token_bitmask(bitmask)
            xgr.apply_token_bitmask_inplace(masked, bitmask)
            assert int(masked[0].argmax()) == token  # greedy: the run picked the masked max
            found.append(int(masked[0].argmax()) != int(raw.argmax()))
            matcher.accept_token(token)
            logits, cache = engine.model(torch.tensor([[token]]), cache)
    return found


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "constraint", "prompt"), [
    ("choice", "yes\nno", "Is the sky green? Answer in one word."),
    ("regex", "[0-9]{3}", "Write a short poem about the sea."),
    ("json", TWO_KEYS, "Describe Ada Lovelace as JSON with name and age."),
])
def test_cpu_model_counts_and_overrides(embedded_engine, mode, constraint, prompt):
    from playground.core.settings import SamplingSettings

    options = {"max_tokens": 16, "temperature": 0.0}
    result = asyncio.run(run_request(embedded_engine, mode, constraint, prompt,
                                     {**options, "inspect": True}))
    side = result["constrained"]
    ids = [t["id"] for t in side["tokens"]]
    steps = Matcher.create(from_text(mode, constraint), embedded_engine.tokenizer).replay(ids)
    assert [t["allowed"] for t in side["tokens"]] == [s.allowed for s in steps]
    assert all(len(t["top"]) == 5 for t in side["tokens"])
    expected = embedded_engine.worker.submit(
        _direct_overrides, embedded_engine, prompt, from_text(mode, constraint),
        SamplingSettings(**options), ids).result()
    assert [t["override"] for t in side["tokens"]] == expected
    if mode == "choice":
        assert side["tokens"][-1]["kind"] == "forced"  # the end, once the word is written
    if mode == "regex":
        assert side["tokens"][0]["override"]  # a poem does not start with a digit
        assert result["unconstrained"]["left_format_at"] == 0
    if mode == "json":  # the token that starts the first key: "name" or "age"
        text = ""
        for token in side["tokens"]:
            text += token["text"]
            if len("".join(text.split())) > 2:
                assert token["kind"] == "narrowed", (text, token)
                break


def test_the_page_handler_draws_both_strips_and_the_inspect_time(fake_engine):
    from playground.core.settings import SamplingSettings
    from playground.web import controls, page

    fake_engine.wants = "maybe"
    fake_engine.enqueue("yes", "maybe")
    controls = controls.controls_from_settings(SamplingSettings(max_tokens=8))

    async def collect():
        return [u async for u in page.run_click(fake_engine, "choice", "yes\nno", "q?",
                                              *controls, runs=[], inspect=True)]

    updates = asyncio.run(collect())

    def last(index):  # an update carries only what changed
        return next(u[index] for u in reversed(updates) if isinstance(u[index], str))

    constrained, free, metrics = last(2), last(4), last(5)
    assert "4 overrides of the model" in constrained and "tok narrowed" in constrained
    assert "left the format at token 0" in free
    assert "token inspector" in metrics
    runs = next(u[6] for u in reversed(updates) if isinstance(u[6], list))
    assert runs  # kept in the history without the request option


def test_bench_measures_the_inspectors_extra_time(fake_engine):
    from playground.bench import engine_bench as bench

    fake_engine.enqueue(*['{"name": "A", "year": 1, "tags": []}', "free text"] * 7)
    row = asyncio.run(bench.inspect_cost(fake_engine, 3, 16, log=lambda message: None))
    assert row["reps"] == 3 and row["click_s"] > 0 and row["inspect_s"] > 0
    assert row["overhead"] == pytest.approx(row["extra_s"] / row["click_s"])
    report = {"engine": "vllm", "latency_ratio": 1.0, "inspect": {**row, "overhead": 0.1}}
    assert bench.goals(report)["inspect_overhead"]["met"]
