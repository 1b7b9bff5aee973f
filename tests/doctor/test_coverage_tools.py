"""The Tool call tab's coverage: each allowed tool's parameters schema gets the JSON tab's
table, its rows led by the tool's name, under one time limit for the whole tool set."""

import json

import pytest

from playground.core.constraints import ToolCalls
from playground.core.presets import load_presets
from playground.doctor.coverage import coverage, tool_schemas, tools_coverage

RAW = ["xgrammar", "guidance", "outlines"]
UNIQUE = {"type": "object", "required": ["tags"],
          "properties": {"tags": {"type": "array", "items": {"type": "string"},
                                  "uniqueItems": True}}}
AGE = {"type": "object", "required": ["age"],
       "properties": {"age": {"type": "integer", "minimum": 0}}}
CARD = {"type": "object", "required": ["card"],
        "properties": {"card": {"type": "string", "format": "credit-card"}}}


def _tools(choice, **parameters):
    return ToolCalls.from_text(json.dumps({"tool_choice": choice, "tools": [
        {"type": "function", "function": {"name": name, "description": "",
                                          "parameters": schema}}
        for name, schema in parameters.items()]}))


def _labels(table, path, keyword):
    return next(r.backends for r in table.rows if (r.path, r.keyword) == (path, keyword))


# (tool set, {(path, keyword): {backend: label}}): the labels the JSON tab gives each
# schema alone (tests/doctor/test_coverage.py's CASES), now with the tool's name.
CASES = [
    (_tools("auto", tag=UNIQUE),
     {("tag: $.properties.tags", "uniqueItems"):
      {"xgrammar": "not enforced", "guidance": "rejected", "outlines": "not enforced"}}),
    (_tools("required", tag=UNIQUE, age=AGE),
     {("tag: $.properties.tags", "uniqueItems"):
      {"xgrammar": "not enforced", "guidance": "rejected", "outlines": "not enforced"},
      ("age: $.properties.age", "minimum"):
      {"xgrammar": "enforced", "guidance": "enforced", "outlines": "not enforced"}}),
    (_tools({"type": "function", "function": {"name": "card"}}, age=AGE, card=CARD),
     {("card: $.properties.card", "format"):
      {"xgrammar": "untested", "guidance": "rejected", "outlines": "rejected"}}),
]


@pytest.mark.parametrize(("tools", "expected"), CASES, ids=["one", "two", "named"])
def test_each_tool_gets_the_json_tabs_table_under_its_name(tools, expected):
    table = tools_coverage(tool_schemas(tools), RAW)
    for (path, keyword), labels in expected.items():
        assert _labels(table, path, keyword) == labels
    # Row for row, the JSON tab's table of each allowed tool's schema alone.
    alone = [(f"{tool.name}: {row.path}", row.keyword, row.backends)
             for tool in tools.allowed for row in coverage(tool.parameters, RAW).rows]
    assert [(r.path, r.keyword, r.backends) for r in table.rows] == alone
    assert set(table.lenient["xgrammar"]) == {tool.name for tool in tools.allowed}


def test_a_named_choice_covers_only_its_tool():
    table = tools_coverage(tool_schemas(_tools({"type": "function", "function": {
        "name": "age"}}, tag=UNIQUE, age=AGE)), ["xgrammar"])
    assert {row.path.split(":")[0] for row in table.rows} == {"age"}
    assert table.not_enforced("xgrammar") == []


def test_not_enforced_names_the_tool():
    table = tools_coverage(tool_schemas(_tools("auto", tag=UNIQUE, age=AGE)), ["xgrammar"])
    assert table.not_enforced("xgrammar") == ["uniqueItems at tag: $.properties.tags"]
    assert not table.full("xgrammar")


@pytest.mark.parametrize(("parameters", "rows"), [(True, 0), (False, 0), (AGE, 5)])
def test_a_boolean_parameters_schema_has_no_rows(parameters, rows):
    table = tools_coverage([("f", parameters)], ["xgrammar"])
    assert len(table.rows) == rows and table.refusals == {"xgrammar": None}


def test_a_refusal_and_the_lenient_schema_name_the_tool():
    table = tools_coverage([("ok", AGE), ("bad", {"type": "string", "format": "credit-card"})],
                           ["guidance"])
    assert table.refusals["guidance"].startswith("bad: ")
    assert table.lenient["guidance"] == {"ok": AGE, "bad": {"type": "string"}}
    assert _labels(table, "bad: $", "format") == {"guidance": "rejected"}


def test_the_tools_share_one_time_limit():
    table = tools_coverage([("a", AGE), ("b", UNIQUE)], ["xgrammar"], time_limit_s=0)
    assert {row.backends["xgrammar"] for row in table.rows} == {"untested"}
    assert {row.path.split(":")[0] for row in table.rows} == {"a", "b"}


TOOL_PRESETS = {name: preset for name, preset in load_presets().items()
                if preset.mode == "tool"}
# What the doctor finds the tool presets' schemas lose on outlines (not a default backend).
OUTLINES_GAPS = {"Calendar entry (tool call)": [
                     "minimum at create_event: $.properties.duration_minutes",
                     "maximum at create_event: $.properties.duration_minutes"],
                 "SQL query (tool call)": ["minimum at run_sql: $.properties.limit",
                                           "maximum at run_sql: $.properties.limit"]}


@pytest.mark.parametrize("name", list(TOOL_PRESETS))
def test_every_tool_preset_is_fully_covered_on_the_default_backends(name):
    table = tools_coverage(tool_schemas(TOOL_PRESETS[name].to_constraint()), RAW,
                           time_limit_s=60)
    assert table.full("xgrammar") and table.full("guidance"), table.as_list()
    assert table.not_enforced("outlines") == OUTLINES_GAPS.get(name, [])
