"""The doctor's coverage table: each label is confirmed by a document and the backend."""

import json

import pytest

from playground.core.constraints import JsonSchema
from playground.core.presets import load_presets
from playground.core.schema import instance_errors
from playground.doctor.coverage import coverage
from playground.doctor.instances import Instances, string_for
from playground.doctor.lenient import lenient_schema
from playground.doctor.sites import sites, without
from playground.doctor.testers import compile_tester
from playground.errors import ConstraintError

RAW = ["xgrammar", "guidance", "outlines"]


def _obj(**properties):
    return {"type": "object", "properties": properties, "required": list(properties)}


# (schema, path, keyword, {backend: label}) as the backends behave in this environment
# (xgrammar 0.2.7, llguidance 1.7.6, outlines-core 0.2.14): the test is that the table says
# so *and* that a document confirms it (test_each_label_is_confirmed).
CASES = [
    (_obj(tags={"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
     "$.properties.tags", "uniqueItems",
     {"xgrammar": "not enforced", "guidance": "rejected", "outlines": "not enforced"}),
    (_obj(age={"type": "integer", "not": {"const": 3}}), "$.properties.age", "not",
     {"xgrammar": "not enforced", "guidance": "rejected", "outlines": "not enforced"}),
    ({**_obj(kind={"enum": ["a", "b"]}, x={"type": "integer"}),
      "required": ["kind"],
      "if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x"]}},
     "$", "then", {"xgrammar": "not enforced", "guidance": "rejected",
                   "outlines": "not enforced"}),
    (_obj(card={"type": "string", "format": "credit-card"}), "$.properties.card", "format",
     {"xgrammar": "untested", "guidance": "rejected", "outlines": "rejected"}),
    (_obj(email={"type": "string", "format": "email"}), "$.properties.email", "format",
     {"xgrammar": "enforced", "guidance": "enforced", "outlines": "enforced"}),
    (_obj(age={"type": "integer", "minimum": 0}), "$.properties.age", "minimum",
     {"xgrammar": "enforced", "guidance": "enforced", "outlines": "not enforced"}),
    (_obj(name={"type": "string", "minLength": 2}), "$.properties.name", "minLength",
     {"xgrammar": "enforced", "guidance": "enforced", "outlines": "enforced"}),
    (_obj(code={"type": "string", "pattern": "^[A-Z]{3}$"}), "$.properties.code", "pattern",
     {"xgrammar": "enforced", "guidance": "enforced", "outlines": "enforced"}),
    ({**_obj(a={"type": "integer"}), "additionalProperties": False}, "$",
     "additionalProperties", {"xgrammar": "enforced", "guidance": "enforced",
                              "outlines": "enforced"}),
    (_obj(a={"type": "integer"}), "$", "required",
     {"xgrammar": "enforced", "guidance": "enforced", "outlines": "enforced"}),
    (_obj(n={"type": "integer", "multipleOf": 3}), "$.properties.n", "multipleOf",
     {"xgrammar": "enforced", "guidance": "enforced", "outlines": "not enforced"}),
    # A required name with no property (JSONSchemaBench Github_easy__o6178): xgrammar
    # builds the object from `properties` alone, so leaving that name out gets through.
    ({**_obj(a={"type": "string"}), "required": ["a", "b"]}, "$", "required",
     {"xgrammar": "not enforced", "guidance": "enforced", "outlines": "not enforced"}),
    # No value is both (Github_trivial__o30283): the closest document breaks only `type`.
    ({"type": "object", "properties": {"m": {"enum": ["x", "y"], "type": "object"}}},
     "$.properties.m", "type",
     {"xgrammar": "not enforced", "guidance": "untested", "outlines": "not enforced"}),
]


def _row(table, path, keyword):
    return next(r for r in table.rows if (r.path, r.keyword) == (path, keyword))


@pytest.mark.parametrize(("schema", "path", "keyword", "labels"), CASES,
                         ids=[f"{c[2]}@{c[1]}" for c in CASES])
def test_each_label_is_confirmed(schema, path, keyword, labels):
    table = coverage(schema, RAW)
    row = _row(table, path, keyword)
    assert row.backends == labels, row.messages
    for backend, label in labels.items():
        if label == "rejected":  # the backend's own compiler refuses the full schema...
            with pytest.raises(ConstraintError):
                compile_tester(backend, schema)
            compile_tester(backend, table.lenient[backend])  # ...and takes the lenient one
            continue
        if label == "untested":
            assert row.messages[backend]
            continue
        document = json.loads(row.evidence[backend])
        # The validator says the document breaks the schema...
        assert instance_errors(schema, document)
        # ...and the backend's matcher lets it through, or stops it, as labelled.
        found = compile_tester(backend, table.lenient[backend]).test(row.evidence[backend])
        assert found.matches is (label == "not enforced"), (backend, found)


def test_rows_cover_every_keyword_at_its_path():
    schema = {"type": "object", "properties": {"a": {"type": "array", "minItems": 1}},
              "$defs": {"x": {"type": "string"}}, "title": "annotations are not rows"}
    found = [(s.json_path, s.keyword) for s in sites(schema)]
    assert found == [("$", "type"), ("$", "properties"), ("$.properties.a", "type"),
                     ("$.properties.a", "minItems"), ("$.$defs.x", "type")]


def test_lenient_schemas():
    schema = _obj(tags={"type": "array", "items": {"type": "integer"}, "uniqueItems": True})
    table = coverage(schema, RAW)
    assert "uniqueItems" not in json.dumps(table.lenient["guidance"])
    assert table.lenient["xgrammar"] == schema  # accepted whole: nothing removed
    assert lenient_schema(schema, "guidance")["x-guidance"] == {"lenient": True}
    assert table.not_enforced("xgrammar") == ["uniqueItems at $.properties.tags"]
    assert not table.full("guidance") and table.full("outlines") is False


def test_without_removes_keywords_and_keeps_the_original():
    schema = _obj(a={"type": "integer", "minimum": 1})
    site = next(s for s in sites(schema) if s.keyword == "minimum")
    assert "minimum" not in json.dumps(without(schema, [site]))
    assert schema["properties"]["a"]["minimum"] == 1


@pytest.mark.parametrize("pattern", [r"^[A-Z]{3}-\d+$", r"(cat|dog)s?", r"[^a]b", r"\w+@\w+"])
def test_string_for_a_pattern(pattern):
    import re

    assert re.search(pattern, string_for(pattern))


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/n"}}, "required": ["a"],
     "$defs": {"n": {"type": "integer", "minimum": 5}}},
    {"anyOf": [{"type": "string", "minLength": 2}, {"type": "null"}]},
    {"allOf": [{"type": "object", "required": ["a"]}, {"properties": {"a": {"const": 1}}}]},
    {"type": "array", "prefixItems": [{"type": "boolean"}], "minItems": 2, "uniqueItems": True},
    {"type": "string", "format": "date-time"},
])
def test_minimal_instances_are_valid(schema):
    document, _ = Instances(schema).build()
    assert instance_errors(schema, document) == []


def test_a_backend_stricter_than_the_schema_leaves_the_keyword_untested():
    # xgrammar's strict mode allows no items where a schema names no `items`: it stops a
    # duplicate, but it stops a single item too, so the break is not shown to be why.
    table = coverage(_obj(tags={"type": "array", "uniqueItems": True}), ["xgrammar"])
    row = _row(table, "$.properties.tags", "uniqueItems")
    assert row.backends == {"xgrammar": "untested"}
    assert "refuses a valid document too" in row.messages["xgrammar"]


def test_a_schema_no_backend_can_take_says_so():
    table = coverage({"type": "string", "format": "credit-card"}, ["guidance"])
    assert table.rows[1].backends == {"guidance": "rejected"}
    assert "credit-card" in table.rows[1].messages["guidance"]


# Schemas of the official suite on which the doctor once raised instead of answering:
# patterns neither RE2 nor Python's re reads, a `not` inside a `not` beside
# unevaluatedProperties (the builder's location was not in its document), a remote $ref.
UNREADABLE = [
    ({"type": "string", "pattern": "^\\cC$"}, "pattern", "cannot read a pattern"),
    ({"type": "string", "pattern": "^\\p{Letter}+$"}, "type", "cannot read a pattern"),
    ({"type": "object", "patternProperties": {"^\\p{Letter}+$": {"type": "number"}}},
     "patternProperties", None),
    ({"properties": {"foo": {"type": "string"}},
      "not": {"not": {"properties": {"bar": {"const": "bar"}}, "required": ["bar"]}},
      "unevaluatedProperties": False}, "unevaluatedProperties", None),
    ({"$id": "http://localhost:1234/draft2020-12/",
      "items": {"$id": "baseUriChange/", "items": {"$ref": "folderInteger.json"}}}, "items",
     "cannot resolve a $ref"),
]


@pytest.mark.parametrize(("schema", "keyword", "why"), UNREADABLE)
def test_a_schema_the_validator_cannot_fully_read_gets_a_table(schema, keyword, why):
    table = coverage(schema, ["xgrammar"], time_limit_s=20)
    rows = [row for row in table.rows if row.keyword == keyword]
    assert rows, [row.keyword for row in table.rows]
    assert all(row.backends["xgrammar"] and row.messages.get("xgrammar", "x")
               for row in table.rows)
    if why is not None:
        assert any(why in message for row in rows for message in row.messages.values())


def test_time_limit_leaves_rows_untested():
    table = coverage(_obj(a={"type": "integer"}), ["xgrammar"], time_limit_s=0)
    assert {row.backends["xgrammar"] for row in table.rows} == {"untested"}


def test_preset_schema_round_trip_through_jsonschema():
    assert JsonSchema.from_schema(_obj(a={"type": "integer"}))


JSON_PRESETS = {name: preset for name, preset in load_presets().items()
                if preset.mode == "json"}
# What the doctor finds the presets' schemas lose on outlines (not a default backend).
OUTLINES_GAPS = {"Order extraction (nested JSON)": ["minimum at "
                                                    "$.properties.items.items.properties.quantity"],
                 "Recipe card": ["minimum at $.properties.servings",
                                 "maximum at $.properties.servings"]}


@pytest.mark.parametrize("name", list(JSON_PRESETS))
def test_every_json_preset_is_fully_covered_on_the_default_backends(name):
    table = coverage(JSON_PRESETS[name].to_constraint().schema, RAW, time_limit_s=60)
    assert table.full("xgrammar") and table.full("guidance"), table.as_list()
    assert table.not_enforced("outlines") == OUTLINES_GAPS.get(name, [])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(JSON_PRESETS))
def test_every_json_preset_passes_vllms_own_validation(name):
    pytest.importorskip("vllm")
    backends = ["vllm:xgrammar", "vllm:guidance"]
    table = coverage(JSON_PRESETS[name].to_constraint().schema, backends, time_limit_s=120)
    assert all(table.full(b) for b in backends), table.as_list()
