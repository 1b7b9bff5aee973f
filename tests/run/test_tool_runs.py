"""The Tool call tab's click path on the fake engine: the tools reach the prompt of both
runs, the constraint only the constrained one, and the verdict reads every call."""

import asyncio
import json

import pytest

from playground.core.constraints import ToolCalls
from playground.core.presets import load_presets
from playground.run.service import run_request

PRESETS = load_presets()
WEATHER = PRESETS["Weather lookup (tool call)"]
CALL = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lisbon", '
        '"unit": "celsius"}}\n</tool_call>')


def run(engine, text, constraint_text=WEATHER.constraint_text, *outputs):
    engine.enqueue(*outputs)
    return asyncio.run(run_request(engine, "tool", constraint_text, "weather?", {}))


def with_choice(choice):
    document = json.loads(WEATHER.constraint_text)
    document["tool_choice"] = choice
    return json.dumps(document)


def test_calls_are_parsed_and_validated(fake_engine):
    result = run(fake_engine, "", WEATHER.constraint_text, "Checking. " + CALL,
                 '<tool_call>\n{"name": "get_weather", "arguments": {"city": 3}}\n</tool_call>')
    constrained, free = result["constrained"], result["unconstrained"]
    assert constrained["verdict"] == "valid"
    assert constrained["tool_calls"] == {
        "calls": [{"index": 1, "name": "get_weather", "errors": [],
                   "arguments": {"city": "Lisbon", "unit": "celsius"}}],
        "text": "Checking. "}
    assert free["verdict"] == "invalid"
    assert sorted(free["tool_calls"]["calls"][0]["errors"]) == [
        "call 1 (get_weather): $.arguments.city: 3 is not of type 'string'",
        "call 1 (get_weather): $.arguments: 'unit' is a required property"]
    assert result["sent"]["language"] == "ebnf"


def test_both_runs_see_the_tools_only_one_is_constrained(fake_engine):
    run(fake_engine, "", WEATHER.constraint_text, CALL, "Sunny.")
    (_, constraint, settings), (_, free, free_settings) = fake_engine.requests
    assert isinstance(constraint, ToolCalls) and free is None
    assert settings.tools == free_settings.tools == constraint.openai_tools()
    assert "tools" not in settings.model_dump()


@pytest.mark.parametrize(("choice", "text", "verdict"), [
    ("auto", "It is sunny in Lisbon.", "valid"),  # text outside calls is free
    ("required", "It is sunny in Lisbon.", "invalid"),  # no call
    ("required", CALL, "valid"),
    ({"type": "function", "function": {"name": "get_weather"}}, CALL, "valid"),
])
def test_tool_choice_decides_the_verdict(fake_engine, choice, text, verdict):
    result = run(fake_engine, "", with_choice(choice), text, text)
    assert result["constrained"]["verdict"] == verdict


def test_a_name_outside_the_tools_is_refused(fake_engine):
    bad = '<tool_call>\n{"name": "rm_rf", "arguments": {}}\n</tool_call>'
    result = run(fake_engine, "", WEATHER.constraint_text, bad, bad)
    assert result["constrained"]["verdict"] == "invalid"
    assert result["constrained"]["errors"] == [
        "call 1: $.name: 'rm_rf' is not a defined tool (get_weather)"]
    # The fake engine does not enforce: the constrained side's escape is said loudly.
    assert result["constrained"]["constraint_escaped"] is True


def test_other_modes_answer_without_tool_calls(fake_engine):
    fake_engine.enqueue("yes", "no")
    result = asyncio.run(run_request(fake_engine, "choice", "yes\nno", "q?", {}))
    assert "tool_calls" not in result["constrained"]
    assert fake_engine.requests[0][2].tools == []
