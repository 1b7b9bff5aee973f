"""The doctor: test strings, what was sent, lenient runs and regex dialects."""

import asyncio
import json

import pytest

from playground.core.constraints import from_text
from playground.doctor import dialect as dialect_mod
from playground.doctor import lenient as lenient_mod
from playground.doctor import sent as sent_mod
from playground.doctor import test_strings as strings_mod
from playground.judging.validation import errors_in
from playground.run.service import run_request

UNIQUE = {"type": "object", "required": ["tags"],
          "properties": {"tags": {"type": "array", "items": {"type": "string"},
                                  "uniqueItems": True}}}
# One schema with each keyword the backends cannot all enforce.
HARD = {"type": "object", "required": ["name", "tags", "age", "card"],
        "properties": {"name": {"type": "string", "maxLength": 20},
                       "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3,
                                "uniqueItems": True},
                       "age": {"type": "integer", "not": {"const": 13}},
                       "card": {"type": "string", "format": "credit-card", "maxLength": 20}},
        "if": {"properties": {"age": {"minimum": 18}}}, "then": {"required": ["name"]},
        "additionalProperties": False}


def test_parse_cases():
    assert strings_mod.parse_cases("+ yes\n- no\nplain\n\n+ a\\nb") == [
        ("yes", True), ("no", False), ("plain", None), ("a\nb", True)]


@pytest.mark.parametrize(("mode", "constraint", "cases", "flags"), [
    ("choice", "yes\nno", "+ yes\n- maybe\n+ nope", ["ok", "ok", "⚠ not as expected"]),
    ("regex", r"\d+", "+ 42\n- x\n+ ٣",
     ["ok", "ok", "⚠ not as expected, ⚠ validator and engine disagree"]),
    ("json", json.dumps(UNIQUE), '+ {"tags": ["a"]}\n- {"tags": ["a", "a"]}',
     ["ok", "⚠ validator and engine disagree"]),
    ("grammar", 'start: "SELECT " NAME\nNAME: /[a-z]+/', "+ SELECT a\n- SELECT 1",
     ["ok", "ok"]),
])
def test_test_strings_in_every_mode(mode, constraint, cases, flags):
    results = strings_mod.test_strings(from_text(mode, constraint), strings_mod.parse_cases(cases))
    rows = strings_mod.test_rows(results)
    assert [row[-1] for row in rows] == flags
    assert all(len(row) == 6 for row in rows)  # string, expected, validator, 2 backends, flag


def test_a_refused_string_names_the_character_and_what_was_expected():
    [result] = strings_mod.test_strings(from_text("regex", "[0-9]+"), [("12a", False)])
    found = result["backends"]["xgrammar"]
    assert found["rejected_at"] == 2 and found["expected"].startswith("'0'-'9'")


def test_a_backend_refusing_the_constraint_is_a_verdict_too():
    [result] = strings_mod.test_strings(from_text("regex", r"(a)\1"), [("aa", True)])
    assert result["validator"]["matches"] is True
    assert result["backends"]["xgrammar"]["matches"] is None
    assert "refuses the constraint" in strings_mod.test_rows([result])[0][3]


@pytest.mark.parametrize(("mode", "text", "backend", "language", "needle"), [
    ("json", json.dumps(UNIQUE), "xgrammar", "ebnf", "root ::="),
    ("json", json.dumps(UNIQUE), "vllm:guidance", "json", '"uniqueItems": true'),
    ("grammar", 'start: "a" b\n?b: "c"', "vllm:guidance", "lark", 'b: "c"'),
    ("grammar", 'start: "a" b\n?b: "c"', "vllm:xgrammar", "ebnf", "::="),
    ("regex", "[a-z]+", "vllm:outlines", "regex", "[a-z]+"),
    ("choice", "yes\nno", "vllm:xgrammar", "json", '"yes"'),
])
def test_sent_is_what_the_backend_receives(mode, text, backend, language, needle):
    found = sent_mod.sent(from_text(mode, text), backend)
    assert found["language"] == language and needle in found["text"]


def test_dialect_differences_are_found_by_asking_the_backends():
    lines = dialect_mod.dialect_lines(dialect_mod.dialect(r"[a-z]+\d"))
    # RE2 (the validator) and xgrammar: \d is ASCII; llguidance: any Unicode digit.
    assert any("'٣'" in line and "guidance matches" in line
               and "xgrammar does not match" in line for line in lines)
    assert any("position 6" in line for line in lines)
    refused = dialect_mod.dialect(r"(?=a)a")
    assert refused[0]["feature"] == "lookahead" and "refuses" in refused[0]["backends"][
        "xgrammar"]


def test_dialect_notes_of_patterns_inside_a_schema():
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": r"^\w+$"}}}
    notes = dialect_mod.dialect_notes(from_text("json", json.dumps(schema)))
    assert notes and notes[0]["where"] == "$.properties.code.pattern"


LOOKAHEAD = {"type": "object", "required": ["name"],
             "properties": {"name": {"type": "string", "pattern": "^(?=A)[A-Za-z]+$"}}}


def test_a_lookahead_inside_a_schema_is_said_to_be_ignored_not_refused():
    """xgrammar refuses a bare lookahead but, inside a schema, compiles it and drops it."""
    from playground.doctor.coverage import coverage
    from playground.doctor.testers import compile_tester

    constraint = from_text("json", json.dumps(LOOKAHEAD))
    note = dialect_mod.dialect_notes(constraint)[0]
    assert note["feature"] == "lookahead"
    assert note["backends"]["xgrammar"].startswith("accepts the pattern but ignores this")
    assert any("lookaround" in warning for warning in constraint.warnings)
    row = next(r for r in coverage(LOOKAHEAD, ["xgrammar"]).rows if r.keyword == "pattern")
    assert row.backends["xgrammar"] == "not enforced"
    assert compile_tester("xgrammar", LOOKAHEAD).test(row.evidence["xgrammar"]).matches
    assert errors_in(constraint, row.evidence["xgrammar"])  # which breaks the pattern


def test_lenient_per_backend():
    constraint = from_text("json", json.dumps(HARD))
    for backend in ("xgrammar", "guidance"):
        relaxed = lenient_mod.lenient(constraint, backend)
        assert "uniqueItems at $.properties.tags" in relaxed.not_enforced
        assert "not at $.properties.age" in relaxed.not_enforced
    guidance = lenient_mod.lenient(constraint, "guidance")
    assert guidance.constraint.schema["x-guidance"] == {"lenient": True}
    assert "format at $.properties.card" in guidance.not_enforced


def test_lenient_run_judges_by_the_full_schema_and_names_what_was_not_enforced(fake_engine):
    fake_engine.enqueue('{"tags": ["a", "a"]}', "free text")
    result = asyncio.run(run_request(fake_engine, "json", json.dumps(UNIQUE), "Tags?",
                                     {"max_tokens": 30, "lenient": True}))
    assert result["not_enforced"] == ["uniqueItems at $.properties.tags"]
    assert result["lenient"]["backend"] == "xgrammar"
    assert result["constrained"]["verdict"] == "invalid"
    [error] = result["constrained"]["errors"]
    assert "non-unique" in error and "not enforced by xgrammar" in error
    assert result["sent"]["language"] == "ebnf"


def test_lenient_is_a_request_option_beside_the_sampling_settings(fake_engine):
    fake_engine.enqueue("yes", "no")
    result = asyncio.run(run_request(fake_engine, "choice", "yes\nno", "q", {"lenient": True}))
    assert result["lenient"]["how"] == "nothing to relax in this mode"
    assert result["not_enforced"] == []


@pytest.mark.slow
def test_cpu_engine_generates_anyway_under_lenient(embedded_engine):
    """The CPU engine (xgrammar) writes output for a schema with uniqueItems, not,
    if/then/else and an unknown format; the verdict still uses the full schema."""
    result = asyncio.run(run_request(embedded_engine, "json", json.dumps(HARD),
                                     "Describe a person as JSON.",
                                     {"max_tokens": 120, "lenient": True}))
    assert result["constrained"]["text"]
    assert result["constrained"]["verdict"] in {"valid", "invalid", "truncated"}
    assert "uniqueItems at $.properties.tags" in result["not_enforced"]
    assert result["sent"]["language"] == "ebnf"


# ---- the page's handlers (plain functions) -----------------------------------------------


def test_coverage_view_lists_keywords_with_this_engines_backend_first(fake_engine):
    from playground.web import doctor_panel
    from playground.web.markdown_safe import plain

    value, line = doctor_panel.coverage_view(fake_engine, json.dumps(UNIQUE))
    assert value["headers"][:3] == ["path", "keyword", "xgrammar (this engine)"]
    row = next(r for r in value["data"] if r[1] == "uniqueItems")
    assert row[2] == "NOT ENFORCED"
    assert plain("uniqueItems at $.properties.tags") in line  # the path is escaped Markdown
    _, bad = doctor_panel.coverage_view(fake_engine, "{")
    assert "invalid JSON" in bad


def test_coverage_view_in_the_tool_tab_covers_each_tool_under_its_name(fake_engine):
    """In a worker, as the JSON tab's: the same rows as the schema alone, led by the name."""
    from playground.web import doctor_panel
    from playground.web.markdown_safe import plain

    tools = json.dumps({"tool_choice": "required", "tools": [
        {"name": "tag", "description": "", "parameters": UNIQUE},
        {"name": "noop", "description": "", "parameters": {"type": "object"}}]})
    value, line = doctor_panel.coverage_view(fake_engine, tools, "tool")
    json_value, _ = doctor_panel.coverage_view(fake_engine, json.dumps(UNIQUE))
    assert value["headers"] == json_value["headers"]
    tagged = [row for row in value["data"] if row[0].startswith("tag: ")]
    assert [[row[0].removeprefix("tag: "), *row[1:]] for row in tagged] == json_value["data"]
    assert any(row[0] == "noop: $" for row in value["data"])
    assert plain("uniqueItems at tag: $.properties.tags") in line and "lenient" not in line


@pytest.mark.parametrize("mode", ["choice", "regex", "json", "grammar"])
def test_test_strings_view_in_every_mode(mode):
    from playground.web import doctor_panel

    constraint = {"choice": "yes\nno", "regex": "[a-z]+", "json": json.dumps(UNIQUE),
                  "grammar": 'start: "a"+'}[mode]
    value = doctor_panel.test_strings_view(mode, constraint, "+ yes\n- 123")
    assert value["headers"] == doctor_panel.TEST_COLUMNS and len(value["data"]) == 2


def test_api_test_strings_takes_lists_pairs_or_lines():
    from playground.web import doctor_panel

    for strings in ([{"text": "yes", "expect": True}], [["yes", True]], "+ yes"):
        [result] = doctor_panel.api_test_strings("choice", "yes\nno", strings)
        assert result["validator"]["matches"] and result["expect"] is True


def test_sent_view_shows_the_lenient_schema(fake_engine):
    from playground.web import doctor_panel

    update = doctor_panel.sent_view(fake_engine, "json", json.dumps(UNIQUE), True)
    assert "not enforced: uniqueItems at $.properties.tags" in update["label"]
    assert "root ::=" in update["value"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["vllm:xgrammar", "vllm:guidance", "vllm:outlines"])
def test_vllms_own_validation_takes_the_lenient_schema(backend):
    """vLLM refuses HARD whole (outlines takes it, ignoring a format beside maxLength);
    what a lenient run sends passes its request validation."""
    pytest.importorskip("vllm")
    from playground.doctor.testers import refusal

    assert (refusal(backend, HARD) is None) is (backend == "vllm:outlines")
    relaxed = lenient_mod.lenient(from_text("json", json.dumps(HARD)), backend, time_limit_s=120)
    assert refusal(backend, relaxed.constraint.schema) is None
    assert "uniqueItems at $.properties.tags" in relaxed.not_enforced


def test_grammar_notes_name_lark_features_and_what_each_backend_says():
    grammar = 'start: A B\nA.2: /a+/\nB: /[ab]+/\n%import common.WS\n%ignore WS'
    lines = dialect_mod.dialect_lines(dialect_mod.dialect_notes(from_text("grammar", grammar)))
    assert any(line.startswith("line 2: terminal priority: xgrammar refuses it")
               for line in lines)
    assert any(line.startswith("line 5: %ignore") for line in lines)
    assert dialect_mod.dialect_notes(from_text("grammar", 'start: "a"')) == []


def test_dialect_view_on_the_page():
    from playground.web import doctor_panel

    assert "guidance matches" in doctor_panel.dialect_view("regex", r"\d+")
    assert doctor_panel.dialect_view("regex", "[a-z]+") == ""
    assert doctor_panel.dialect_view("regex", "a(") == ""


def test_a_backtracking_test_string_is_given_up_not_a_frozen_server():
    """A regex RE2 refuses falls back to Python `re`: a test string must not hold the
    server for hours (it is judged in a killable worker under the compile time limit)."""
    import time

    from playground.core.limits import Limits, configure
    from playground.web.doctor_panel import api_test_strings

    configure(Limits(compile_timeout_s=2.0))
    try:
        start = time.monotonic()
        with pytest.raises(Exception, match="gave up after 2 s"):
            api_test_strings("regex", r"(a+)+\1x", ["a" * 40])
        assert time.monotonic() - start < 15
    finally:
        configure(Limits())
    with pytest.raises(Exception, match="at most 50"):
        api_test_strings("regex", "a+", ["a"] * 51)


def test_probing_a_backtracking_pattern_is_bounded():
    """The lookahead probe runs Python `re` on the user's pattern: in a worker, killed past
    the limit, never on the server's loop (this one backtracks for hours)."""
    import time

    from playground.core.limits import Limits, configure
    from playground.web.doctor_panel import dialect_view

    schema = {"type": "string", "pattern": "^(?:a|aa){40}(?=b)"}
    configure(Limits(compile_timeout_s=2))
    try:
        start = time.monotonic()
        shown = dialect_view("json", json.dumps(schema))
        assert time.monotonic() - start < 30
    finally:
        configure(Limits())
    assert "gave up" in shown
