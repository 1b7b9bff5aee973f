"""The Tool call tab's handlers without a browser: the check as you type, and the calls
table under a verdict (escaped: a call's text is the model's)."""

import json

from playground.core.presets import load_presets
from playground.web.page import check_message, verdict_html

PRESET = load_presets()["Weather lookup (tool call)"]


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
