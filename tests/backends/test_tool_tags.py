"""The Tool call tab's constraint as the backends receive it: xgrammar's structural tag,
llguidance's Lark, vLLM's fields, and what their matchers accept (bytes and Qwen2.5's
tokens, whose `<tool_call>` is one added token)."""

import json

import pytest

from playground.backends.guidance import special_tag_ids, tool_calls_lark
from playground.backends.vllm import openai_request, structured_outputs_kwargs
from playground.backends.xgrammar import legacy_structural_tag, structural_tag
from playground.core.constraints import from_text
from playground.core.settings import SamplingSettings
from playground.engines.base import encode_prompt
from playground.errors import ConstraintError
from playground.judging.matcher import Matcher
from tests.support import qwen_tokenizer

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
    "additionalProperties": False}}},
    {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
        "additionalProperties": False}}}]
NAMED = {"type": "function", "function": {"name": "add"}}
WEATHER = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
ADD = '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>'
UNKNOWN = '<tool_call>\n{"name": "rm", "arguments": {}}\n</tool_call>'
BACKENDS = ["xgrammar", "guidance"]


def tools(choice):
    return from_text("tool", json.dumps({"tool_choice": choice, "tools": TOOLS}))


def test_the_structural_tag_follows_the_tool_choice():
    auto = structural_tag(tools("auto"))["format"]
    assert auto["type"] == "triggered_tags" and auto["triggers"] == ["<tool_call>"]
    assert [tag["begin"] for tag in auto["tags"]] == [
        '<tool_call>\n{"name": "get_weather", "arguments": ',
        '<tool_call>\n{"name": "add", "arguments": ']
    assert {tag["end"] for tag in auto["tags"]} == {"}\n</tool_call>"}
    assert auto["tags"][0]["content"] == {"type": "json_schema",
                                          "json_schema": TOOLS[0]["function"]["parameters"]}
    required = structural_tag(tools("required"))["format"]
    assert required["type"] == "tags_with_separator" and required["at_least_one"] is True
    assert required["stop_after_first"] is False
    named = structural_tag(tools(NAMED))["format"]
    assert [tag["begin"] for tag in named["tags"]] == [
        '<tool_call>\n{"name": "add", "arguments": ']
    assert named["stop_after_first"] is True
    legacy = legacy_structural_tag(tools("auto"))
    assert legacy["triggers"] == ["<tool_call>"] and len(legacy["structures"]) == 2


@pytest.mark.parametrize("choice", ["auto", "required"])
@pytest.mark.parametrize("backend", ["xgrammar", "auto", "guidance"])
def test_vllm_receives_a_structural_tag_or_for_guidance_lark(backend, choice):
    fields = structured_outputs_kwargs(tools(choice), backend)
    if backend != "guidance":  # a JSON string, as StructuredOutputsParams takes it
        assert json.loads(fields["structural_tag"]) == structural_tag(tools(choice))
    elif choice == "auto":  # the older form, the one vLLM's guidance backend reads
        assert json.loads(fields["structural_tag"]) == legacy_structural_tag(tools(choice))
    else:
        assert fields == {"grammar": tool_calls_lark(tools(choice))}


def test_outlines_is_refused_in_one_line():
    with pytest.raises(ConstraintError, match="outlines backend has no structural tags"):
        structured_outputs_kwargs(tools("auto"), "outlines")


def test_the_server_request_renders_the_tools_and_keeps_its_parser_out():
    settings = SamplingSettings().with_tools(tools("auto").openai_tools())
    _, body = openai_request("hi", tools("auto"), settings, "m", "xgrammar")
    assert body["tools"] == tools("auto").openai_tools() and body["tool_choice"] == "none"
    assert "structural_tag" in body["structured_outputs"]
    _, free = openai_request("hi", None, settings, "m", "xgrammar")
    assert free["tools"] == body["tools"] and "structured_outputs" not in free


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("choice", "text", "accepted", "complete"), [
    ("auto", "", True, True),
    ("auto", "It is sunny.", True, True),  # free text outside the tags
    ("auto", "Let me check. " + WEATHER + " Done.", True, True),
    ("auto", WEATHER + "\n" + ADD, True, True),
    ("auto", UNKNOWN, False, False),  # a name outside the tools
    ("auto", '<tool_call>\n{"name": "add", "arguments": {"a": "x"}}', False, False),
    ("required", "", True, False),  # it cannot end without a call
    ("required", "It is sunny.", False, False),
    ("required", WEATHER + "\n" + ADD, True, True),
    ("required", UNKNOWN, False, False),
    (NAMED, WEATHER, False, False),
    (NAMED, ADD, True, True),
    (NAMED, ADD + "\n" + ADD, False, False),  # exactly one call
])
def test_the_matchers_enforce_the_calls(backend, choice, text, accepted, complete):
    found = Matcher.create(tools(choice), None, backend).test(text)
    assert (found.accepted, found.complete) == (accepted, complete), found


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("choice", ["auto", "required", NAMED])
def test_qwens_own_call_tokens_are_allowed(choice, backend):
    """Qwen2.5 writes `<tool_call>` as one added token (151657): xgrammar's trigger takes
    it. llguidance reads added tokens as special ones, never as text, so its Lark writes
    the tags as those tokens (`special_tag_ids`); spelled as text, its mask let 151657
    through and the next step failed, as every required call did on vLLM's guidance."""
    if choice == NAMED:
        ids = qwen_tokenizer().encode(ADD, add_special_tokens=False)
        steps = Matcher.create(tools(choice), qwen_tokenizer(), backend).replay(ids)
        assert all(step.accepted for step in steps)
        return
    tokenizer = qwen_tokenizer()
    ids = tokenizer.encode(WEATHER, add_special_tokens=False)
    assert tokenizer.convert_tokens_to_ids("<tool_call>") in ids
    steps = Matcher.create(tools(choice), tokenizer, backend).replay(ids)
    assert all(step.accepted for step in steps)
    if choice == "auto":  # free before the trigger, narrowed inside the tag
        assert steps[0].allowed > 1000 and steps[1].allowed <= 2


@pytest.mark.parametrize("choice", ["required", NAMED])
def test_guidance_writes_qwens_tags_as_its_tokens(choice):
    tags = special_tag_ids(qwen_tokenizer())
    assert tags == {"<tool_call>": 151657, "</tool_call>": 151658}
    lark = tool_calls_lark(tools(choice), tags)
    assert "<[151657]>" in lark and "<[151658]>" in lark and '"<tool_call>' not in lark
    assert structured_outputs_kwargs(tools(choice), "guidance", tags) == {"grammar": lark}
    assert special_tag_ids(object()) == {}  # no tokenizer: the tags stay text


def test_qwens_template_renders_the_tools_itself():
    tokenizer = qwen_tokenizer()
    if "tools" not in str(tokenizer.chat_template or ""):
        pytest.skip("this copy of Qwen2.5's tokenizer has no chat template with tools")
    settings = SamplingSettings().with_tools(tools("auto").openai_tools())
    text = tokenizer.decode(encode_prompt(tokenizer, "weather in Oslo?", settings))
    assert "<tools>" in text and '"name": "get_weather"' in text
    assert text.count("# Tools") == 1  # not a second copy in the system prompt
