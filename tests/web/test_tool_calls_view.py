"""The Tool call tab's handlers without a browser: the check as you type (with what the
engine will not enforce of the tools' parameters), and the calls table under a verdict
(escaped: a call's text is the model's)."""

import json

import pytest

from playground.core.presets import load_presets
from playground.engines.fake import FakeEngine
from playground.web.page import check_message, not_enforced_text, verdict_html, warnings_message

PRESET = load_presets()["Weather lookup (tool call)"]
UNIQUE = {"type": "object", "required": ["tags"],
          "properties": {"tags": {"type": "array", "items": {"type": "string"},
                                  "uniqueItems": True}}}
AGE = {"type": "object", "required": ["age"],
       "properties": {"age": {"type": "integer", "minimum": 0}}}


def _tools(choice, **parameters):
    return json.dumps({"tool_choice": choice, "tools": [
        {"type": "function", "function": {"name": name, "description": "",
                                          "parameters": schema}}
        for name, schema in parameters.items()]})


def test_the_check_as_you_type():
    assert "Constraint OK" in check_message("tool", PRESET.constraint_text)
    bad = json.loads(PRESET.constraint_text)
    bad["tool_choice"] = "nope"
    assert "must be auto, required, or one of the tools" in check_message(
        "tool", json.dumps(bad))


def test_the_verdict_lists_the_calls_and_the_text_outside():
    result = {"verdict": "invalid", "errors": ["call 1: $.name: 'x<b>' is not a defined tool"],
              "tool_calls": {"text": "Sure <script>", "calls": [
                  {"index": 1, "name": "x<b>", "arguments": {"a": "<i>"},
                   "errors": ["call 1: $.name: 'x<b>' is not a defined tool"]},
                  {"index": 2, "name": "get_weather", "arguments": {"city": "Oslo"},
                   "errors": []}]}}
    shown = verdict_html(result)
    assert 'data-calls="2"' in shown and shown.count('class="tool-call"') == 2
    assert "<b>" not in shown and "<script>" not in shown and "&lt;script&gt;" in shown
    assert '<td class="tool-name">get_weather</td>' in shown
    assert "text outside the calls: Sure &lt;script&gt;" in shown


def test_no_calls_says_so_and_other_modes_show_nothing():
    assert "no tool call" in verdict_html({"verdict": "invalid",
                                           "tool_calls": {"calls": [], "text": "hi"}})
    assert "tool-calls" not in verdict_html({"verdict": "valid"})


# (editor text, what the check line lists, or None for "Constraint OK"): xgrammar (the
# fake engine's backend) lets uniqueItems through; the allowed tools' gaps alone count.
CHECK_CASES = [
    (_tools("auto", tag=UNIQUE, age=AGE), ["uniqueItems at tag: $.properties.tags"]),
    (_tools("required", tag=UNIQUE), ["uniqueItems at tag: $.properties.tags"]),
    (_tools("age", tag=UNIQUE, age=AGE), None),  # the named tool is fully covered
    (PRESET.constraint_text, None),
]


@pytest.mark.parametrize(("text", "gaps"), CHECK_CASES,
                         ids=["auto", "required", "named covered tool", "preset"])
def test_the_check_line_lists_the_tools_gaps_without_the_lenient_hint(text, gaps):
    engine = FakeEngine()
    engine.load()
    line = check_message("tool", text, engine)
    # A run's check line reads the table the editor's check worked out.
    assert not_enforced_text(engine, "tool", text) == (gaps or [])
    if gaps is None:
        assert "Constraint OK" in line and "will not enforce" not in line
        return
    assert "will not enforce" in line and "Constraint OK" not in line
    assert "uniqueItems at tag" in line.replace("\\", "")  # plain() escapes the punctuation
    assert "see Coverage)" in line and "lenient" not in line


@pytest.mark.parametrize(("lenient_hint", "hint"), [
    (True, "<em>Generate anyway (lenient)</em> runs with what it enforces"),
    (False, "(see Coverage)"),
])
def test_the_lenient_hint_only_where_the_tab_has_a_lenient_run(lenient_hint, hint):
    line = warnings_message([], ["uniqueItems at $"], lenient_hint=lenient_hint)
    assert hint in line
    assert ("lenient" in line) is lenient_hint
    assert "Constraint OK" in warnings_message([], [], lenient_hint=lenient_hint)
