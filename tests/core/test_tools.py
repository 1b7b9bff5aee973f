"""The Tool call tab's constraint: parsing and checks, the call parser and its verdict."""

import json

import pytest

from playground.core.constraints import ToolCalls, from_text
from playground.core.settings import SamplingSettings, chat_messages
from playground.core.text_check import errors_in
from playground.core.tools import calls_found, parse_calls, split_calls, tools_prompt
from playground.errors import ConstraintError
from playground.run.result import RunResult

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"], "additionalProperties": False}}}
ADD = {"name": "add", "parameters": {"type": "object", "properties": {
    "a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}


def tools(choice="auto", *more):
    return from_text("tool", json.dumps({"tool_choice": choice, "tools": [WEATHER, ADD, *more]}))


def call(name, arguments):
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


def test_the_openai_form_and_the_flat_form_read_the_same():
    flat = from_text("tool", json.dumps([WEATHER["function"], ADD]))
    assert isinstance(flat, ToolCalls) and flat == tools()
    assert [t.name for t in flat.tools] == ["get_weather", "add"]
    assert flat.choice == "auto" and flat.named is None
    assert from_text("tool", flat.to_text()) == flat  # the editor's text round-trips
    assert hash(flat) == hash(tools())


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", ("auto", None)),
    ("required", ("required", None)),
    ({"type": "function", "function": {"name": "add"}}, ("named", "add")),
    ("add", ("named", "add")),
])
def test_tool_choice(choice, expected):
    found = tools(choice)
    assert (found.choice, found.named) == expected
    assert [t.name for t in found.allowed] == (["add"] if expected[1] else ["get_weather", "add"])


@pytest.mark.parametrize(("text", "message"), [
    ("", "the tools are empty"),
    ("{", "invalid JSON at line 1"),
    ('"tools"', "give a JSON object"),
    ('{"tools": []}', "at least one tool"),
    ('{"tools": [1]}', "a tool is an object"),
    ('{"tools": [{"name": "a b"}]}', "1 to 64 letters"),
    ('{"tools": [{"name": ""}]}', "1 to 64 letters"),
    ('{"tools": [{"name": "foo\\n"}]}', "1 to 64 letters"),  # `$` would let it through
    (json.dumps({"tools": [{"name": "x" * 65}]}), "1 to 64 letters"),
    ('{"tools": [{"name": "a\\"}, {\\"x"}]}', "1 to 64 letters"),  # a name breaking the tag
    ('{"tools": [{"name": "a"}, {"name": "a"}]}', "used twice"),
    ('{"tools": [{"name": "a", "parameters": {"type": "nope"}}]}', "tools[0] (a): parameters"),
    ('{"tools": [{"name": "a", "parameters": 3}]}', "must be a JSON Schema"),
    ('{"tools": [{"name": "a", "description": 3}]}', "description must be a string"),
    ('{"tools": [{"name": "a", "oops": 1}]}', "unknown key 'oops'"),
    ('{"tools": [{"type": "code", "function": {"name": "a"}}]}', 'type must be "function"'),
    ('{"tools": [{"name": "a"}], "extra": 1}', "unknown key 'extra'"),
    ('{"tools": [{"name": "a"}], "tool_choice": "b"}', "must be auto, required, or one of"),
    ('{"tools": [{"name": "a"}], "tool_choice": "none"}', "nothing to constrain"),
    ('{"tools": [{"name": "a"}], "tool_choice": 3}', "must be auto, required"),
    (json.dumps({"tools": [{"name": f"t{i}"} for i in range(33)]}), "at most 32"),
    ('{"tools": [{"name": "a", "parameters": {"$ref": "http://x/y"}}]}', "tools[0] (a)"),
])
def test_bad_tools_are_refused_in_one_line(text, message):
    with pytest.raises(ConstraintError) as caught:
        from_text("tool", text)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith("tool: ")


def test_warnings_name_the_tool():
    found = from_text("tool", json.dumps([{"name": "wide", "parameters": {
        "type": "object", "properties": {"s": {"type": "string", "maxLength": 500}}}},
        {"name": "list", "parameters": {"type": "array"}}]))
    assert any(w.startswith("wide: slow: maxLength 500") for w in found.warnings)
    assert any(w.startswith("list: the parameters schema is not of type object")
               for w in found.warnings)


# ---- calls in an output ------------------------------------------------------------------


@pytest.mark.parametrize(("choice", "text", "errors"), [
    ("auto", "It is sunny.", []),  # text alone is an answer under auto
    ("auto", "Let me look. " + call("get_weather", {"city": "Oslo"}) + " Done.", []),
    ("auto", call("get_weather", {"city": "Oslo"}) + "\n" + call("add", {"a": 1, "b": 2}), []),
    ("auto", call("get_weather", {"city": 3}),
     ["call 1 (get_weather): $.arguments.city: 3 is not of type 'string'"]),
    ("auto", call("get_weather", {"city": "Oslo", "unit": "k"}),
     ["call 1 (get_weather): $.arguments.unit: 'k' is not one of ['c', 'f']"]),
    ("auto", call("get_weather", {}),
     ["call 1 (get_weather): $.arguments: 'city' is a required property"]),
    ("auto", call("send_email", {}),
     ["call 1: $.name: 'send_email' is not a defined tool (get_weather, add)"]),
    ("auto", "<tool_call>\n{oops}\n</tool_call>",
     ["call 1: not JSON: line 2, column 2: Expecting property name enclosed in double quotes"]),
    # The closing tag inside an argument's string is text: the call ends after its JSON.
    ("auto", call("get_weather", {"city": "a </tool_call> b"}), []),
    ("auto", "<tool_call>[1]</tool_call>",
     ['call 1: $: a call is an object {"name": ..., "arguments": {...}}']),
    ("auto", '<tool_call>{"name": "add"}</tool_call>',
     ["call 1: $: 'arguments' is a required property"]),
    ("auto", "hi <tool_call>\n{\"name\": \"add\"",
     ["call 1: <tool_call> is never closed by </tool_call>"]),
    ("required", "It is sunny.",
     ["no tool call: tool_choice required asks for at least one tool call"]),
    ("required", call("add", {"a": 1, "b": 2}), []),
    ("add", call("get_weather", {"city": "Oslo"}),
     ["call 1: $.name: 'get_weather' is not the tool the tool choice names (add)"]),
    ("add", call("add", {"a": 1, "b": 2}) * 2,
     ["2 calls: a named tool choice makes exactly one"]),
    ("add", "", ["no tool call: tool_choice named asks for a call of add"]),
])
def test_call_errors(choice, text, errors):
    assert errors_in(tools(choice), text) == errors


def test_text_outside_calls_is_kept_as_text():
    text = "Sure. " + call("add", {"a": 1, "b": 2}) + " and " + call("nope", {})
    pieces = split_calls(text)
    assert [p for p in pieces if isinstance(p, str)] == ["Sure. ", " and "]
    parsed = parse_calls(tools(), text)
    assert parsed.text == "Sure.  and "
    assert [(c.index, c.name, c.arguments) for c in parsed.calls] == [
        (1, "add", {"a": 1, "b": 2}), (2, "nope", {})]
    found = calls_found(text, errors_in(tools(), text))
    assert found["text"] == "Sure.  and "
    assert [c["errors"] for c in found["calls"]] == [
        [], ["call 2: $.name: 'nope' is not a defined tool (get_weather, add)"]]


@pytest.mark.parametrize("text", [
    "<tool_call>" * 5000,  # many unclosed triggers: linear, one call to the end
    "</tool_call>" * 5000,
    '<tool_call>{"name": "add", "arguments": {"a": NaN, "b": Infinity}}</tool_call>',
    '<tool_call>{"name": "add", "arguments": ' + "[" * 5000 + "]" * 5000 + "}</tool_call>",
    "<tool_call>\x00\ud800</tool_call>",
    '<tool_call>{"name": "add", "arguments": {"a": ' + "[" * 300 + "]" * 300 + "}}</tool_call>",
    '<tool_call>{"name": "add", "arguments": {"a": 1e400}}</tool_call>',
])
def test_hostile_outputs_are_judged_not_crashed(text):
    errors = errors_in(tools(), text)
    found = calls_found(text, errors)
    json.dumps(found, allow_nan=False)  # what a page, a file and the API carry
    RunResult(tool_calls=found).model_dump_json()  # a history file: pydantic stops at ~255
    assert isinstance(errors, list)


def test_tools_are_rendered_into_the_system_prompt_where_asked():
    settings = SamplingSettings(system_prompt="Be brief.").with_tools(tools().openai_tools())
    assert settings.model_dump() == SamplingSettings(system_prompt="Be brief.").model_dump()
    messages = chat_messages("hi", settings, tools_in_system=True)
    assert messages[0]["content"].startswith("Be brief.\n\n# Tools")
    assert '"name": "get_weather"' in messages[0]["content"]
    assert chat_messages("hi", settings) == [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "hi"}]
    assert "<tool_call>" in tools_prompt([])
