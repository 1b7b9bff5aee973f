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


UNIQUE = {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, bool]]:
    """The coverage worker, as a fake over an empty cache: each call's (argument, tools)
    is recorded, and every tool's table (or the schema's) has uniqueItems not enforced."""
    calls: list[tuple[Any, bool]] = []

    def in_worker(argument: Any, backends: list[str], tools: bool = False) -> Any:
        calls.append((argument, tools))
        paths = [f"{name}: $" for name, _ in argument] if tools else ["$"]
        found = SimpleNamespace(rows=[], notes=[], full=lambda backend: False)
        found.not_enforced = lambda backend: [f"uniqueItems at {p}" for p in paths]
        found.as_list = lambda: [{"path": p, "keyword": "uniqueItems"} for p in paths]
        return found

    monkeypatch.setattr(doctor_panel, "_tables", {})
    monkeypatch.setattr(doctor_panel, "_coverage_in_worker", in_worker)
    return calls


# (mode, editor text, the check line's list): a schema's gaps, or each allowed tool's,
# led by its name.
GAP_CASES = [
    ("json", json.dumps(UNIQUE), ["uniqueItems at $"]),
    ("tool", _tools("auto", f=UNIQUE, g=OBJECT), ["uniqueItems at f: $", "uniqueItems at g: $"]),
    ("tool", _tools("g", f=UNIQUE, g=OBJECT), ["uniqueItems at g: $"]),
    ("json", "true", []),  # a boolean schema has no keywords: no table asked for
]


@pytest.mark.parametrize(("mode", "text", "gaps"), GAP_CASES,
                         ids=["schema", "tools", "named tool", "boolean schema"])
def test_the_check_lines_gaps_come_from_the_coverage_tables_cache(
        worker: list[Any], mode: str, text: str, gaps: list[str]) -> None:
    from playground.judging.judge import build_constraint

    constraint = build_constraint(mode, text)
    # A run's check line asks first: nothing worked out yet, and it computes nothing.
    assert doctor_panel.not_enforced_here(None, constraint, compute=False) == []  # type: ignore[arg-type]
    assert worker == []
    assert doctor_panel.not_enforced_here(None, constraint) == gaps  # type: ignore[arg-type]
    # Then the run's line, and the coverage table, read the one table worked out.
    assert doctor_panel.not_enforced_here(None, constraint, compute=False) == gaps  # type: ignore[arg-type]
    if gaps:
        doctor_panel.coverage_view(None, text, mode)  # type: ignore[arg-type]
    assert len(worker) == (1 if gaps else 0)
    assert all(tools == (mode == "tool") for _, tools in worker)


# (mode given to /coverage, or None for the one-argument call; text; the rows' paths).
COVERAGE_API_CASES = [
    (None, json.dumps(UNIQUE), ["$"]),
    ("json", json.dumps(UNIQUE), ["$"]),
    ("tool", _tools("auto", f=UNIQUE, g=OBJECT), ["f: $", "g: $"]),
    ("tool", _tools("f", f=UNIQUE, g=OBJECT), ["f: $"]),
]


@pytest.mark.parametrize(("mode", "text", "paths"), COVERAGE_API_CASES,
                         ids=["one argument", "json", "tools", "named tool"])
def test_coverage_endpoint_answers_a_schema_or_a_tool_set(
        worker: list[Any], mode: str | None, text: str, paths: list[str]) -> None:
    extra = () if mode is None else (mode,)
    rows = doctor_panel.coverage_details(None, text, *extra)  # type: ignore[arg-type]
    assert [row["path"] for row in rows] == paths
    assert [tools for _, tools in worker] == [mode == "tool"]


@pytest.mark.parametrize(("mode", "text", "words"), [
    ("regex", json.dumps(UNIQUE), "mode: \"json\" (a schema) or \"tool\""),
    ("", json.dumps(UNIQUE), "not ''"),
    ("TOOL", _tools("auto", f=UNIQUE), "not 'TOOL'"),
    ("tool", json.dumps(UNIQUE), "tools"),  # a schema is not a tool set
    ("json", "{", "invalid JSON"),
], ids=["regex", "empty", "upper case", "schema as tools", "bad JSON"])
def test_coverage_endpoint_refuses_a_bad_mode_or_text(worker: list[Any], mode: str, text: str,
                                                      words: str) -> None:
    import gradio as gr

    with pytest.raises(gr.Error) as raised:
        doctor_panel.coverage_details(None, text, mode)  # type: ignore[arg-type]
    assert words in raised.value.message
    assert worker == []


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
