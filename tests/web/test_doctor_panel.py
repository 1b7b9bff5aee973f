"""The doctor panel's Markdown output, rendered as the page renders it: user-derived text
(a schema key, an error quoting the schema, a dialect note quoting a pattern) is shown as
typed, never as a live image or link. Plain handlers, no browser, no worker process."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from markdown_it import MarkdownIt

from playground.web import doctor_panel

HOSTILE = "![x](http://host/i.png)"
LINK = "[click](http://host/)"


def rendered(markdown: str) -> str:
    """HTML as gr.Markdown makes it: CommonMark with raw HTML allowed."""
    return MarkdownIt("commonmark").render(markdown)


def assert_inert(markdown: str, *texts: str) -> None:
    html = rendered(markdown)
    assert "<img" not in html and "<a " not in html, html
    # Shown literally: the text survives rendering, only HTML-escaped.
    for text in texts:
        assert text.replace("&", "&amp;").replace("<", "&lt;") in html, html


@pytest.fixture(autouse=True)
def backends(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU engine's column alone: no engine needed, no backend imported."""
    monkeypatch.setattr(doctor_panel, "coverage_backends", lambda engine: ["xgrammar"])


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A coverage table whose path, and note, are a hostile schema key."""
    found = SimpleNamespace(rows=[], notes=[f"note about {HOSTILE}"])
    found.full = lambda backend: False
    found.not_enforced = lambda backend: [f"uniqueItems at $.properties.{HOSTILE}"]
    monkeypatch.setattr(doctor_panel, "bounded_coverage", lambda schema, backends: found)
    return found


def test_coverage_summary_shows_a_hostile_key_as_text(table: SimpleNamespace) -> None:
    schema = {"type": "object", "properties": {HOSTILE: {"uniqueItems": True}}}
    _, line = doctor_panel.coverage_view(None, json.dumps(schema))  # type: ignore[arg-type]
    assert_inert(line, HOSTILE, f"note about {HOSTILE}")
    # The panel's own Markdown stays live: the lenient switch's name in italics.
    assert "<em>Generate anyway (lenient)</em>" in rendered(line)


def test_coverage_error_quoting_the_schema_is_text() -> None:
    _, line = doctor_panel.coverage_view(None, json.dumps({"type": HOSTILE}))  # type: ignore[arg-type]
    assert_inert(line, HOSTILE)


def test_coverage_timeout_message_is_text(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(schema: Any, backends: list[str]) -> Any:
        raise TimeoutError(f"stuck on {LINK}")

    monkeypatch.setattr(doctor_panel, "bounded_coverage", slow)
    _, line = doctor_panel.coverage_view(None, json.dumps({"type": "object"}))  # type: ignore[arg-type]
    assert_inert(line, LINK)


def _tools(choice: Any, **parameters: Any) -> str:
    return json.dumps({"tool_choice": choice, "tools": [
        {"type": "function", "function": {"name": name, "description": "",
                                          "parameters": schema}}
        for name, schema in parameters.items()]})


OBJECT = {"type": "object", "properties": {"a": {"type": "integer"}}}


@pytest.fixture
def tools_table(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The Tool call tab's table, as a fake: what it was asked for is recorded."""
    asked: list[Any] = []
    rows = [SimpleNamespace(path=f"f: $.properties.{HOSTILE}", keyword="uniqueItems",
                            backends={"xgrammar": "not enforced"})]
    found = SimpleNamespace(rows=rows, notes=[f"f: note about {HOSTILE}"])
    found.full = lambda backend: False
    found.not_enforced = lambda backend: [f"uniqueItems at f: $.properties.{HOSTILE}"]

    def bounded(tools: Any, backends: list[str]) -> Any:
        asked.append(tools)
        return found

    monkeypatch.setattr(doctor_panel, "bounded_tools_coverage", bounded)
    monkeypatch.setattr(doctor_panel, "bounded_coverage",
                        lambda schema, backends: pytest.fail("the JSON tab's table"))
    return asked


# (tool_choice, tools, the (name, parameters) the table is asked for): the allowed tools.
TOOL_CASES = [
    ("auto", {"f": OBJECT}, [("f", OBJECT)]),
    ("required", {"f": OBJECT, "g": True}, [("f", OBJECT), ("g", True)]),
    ("g", {"f": OBJECT, "g": {"type": "object"}}, [("g", {"type": "object"})]),
]


@pytest.mark.parametrize(("choice", "tools", "asked"), TOOL_CASES,
                         ids=["auto", "required", "named"])
def test_tool_coverage_asks_for_each_allowed_tools_parameters(
        tools_table: list[Any], choice: Any, tools: dict[str, Any], asked: list[Any]) -> None:
    value, line = doctor_panel.coverage_view(None, _tools(choice, **tools), "tool")  # type: ignore[arg-type]
    assert tools_table == [asked]
    assert value["headers"] == ["path", "keyword", "xgrammar (this engine)"]
    assert value["data"] == [[f"f: $.properties.{HOSTILE}", "uniqueItems", "NOT ENFORCED"]]
    # The tool's name leads the path; a schema key in it is text, and the Tool call tab
    # has no lenient run to point to.
    assert_inert(line, HOSTILE, f"f: note about {HOSTILE}")
    assert "lenient" not in line


def test_tool_coverage_error_and_timeout_are_text(monkeypatch: pytest.MonkeyPatch) -> None:
    _, bad = doctor_panel.coverage_view(None, "{", "tool")  # type: ignore[arg-type]
    assert "invalid JSON" in bad

    def slow(tools: Any, backends: list[str]) -> Any:
        raise TimeoutError(f"stuck on {LINK}")

    monkeypatch.setattr(doctor_panel, "bounded_tools_coverage", slow)
    _, line = doctor_panel.coverage_view(None, _tools("auto", f=OBJECT), "tool")  # type: ignore[arg-type]
    assert "Coverage gave up" in line
    assert_inert(line, LINK)


def note(where: str, **backends: str) -> dict[str, Any]:
    return {"where": where, "position": 0, "feature": "lookahead",
            "validator": "Python re (RE2 refuses it)", "backends": backends}


def test_dialect_lines_quoting_a_pattern_are_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shown (it differs on xgrammar) and folded (it differs on guidance only): both text."""
    notes = [note(f"pattern {HOSTILE}", xgrammar="refuses it"),
             note(f"pattern {LINK}", xgrammar="accepts the pattern", guidance="refuses it")]
    monkeypatch.setattr(doctor_panel.dialect_mod, "bounded_dialect_notes",
                        lambda constraint, limit_s: notes)
    shown = doctor_panel.dialect_view("regex", "a+")
    assert_inert(shown, HOSTILE, LINK)
    assert '<span class="warn">Dialect:</span>' in rendered(shown)


def test_dialect_shows_only_what_differs_on_the_engines_backend(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The SQL preset's six `?rule` lines and the semantic version's `\\d` probes differ
    on no backend, or on guidance only: on xgrammar they are folded into a <details>."""
    sql = doctor_panel.dialect_view("grammar", '?start: a\n?a: "x"')
    assert "Dialect:</span>" not in sql
    assert "<details" in sql and "Dialect notes (2)" in sql
    digits = doctor_panel.dialect_view("regex", r"(0|[1-9]\d*)")
    assert "Dialect:</span>" not in digits and "U+0663" in digits
    on_guidance = doctor_panel.dialect_view("regex", r"(0|[1-9]\d*)", "vllm:guidance")
    assert on_guidance.count("Dialect:</span>") == 2 and "<details" not in on_guidance
