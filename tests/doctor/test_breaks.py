"""The table of breaks: for each keyword, values that violate it and nothing else.

One row per keyword of `BREAKS`: a schema whose root holds the keyword, and the jsonschema
validator its break must fail (the keyword itself, or the one inside its subschema).
"""

from __future__ import annotations

from typing import Any

import pytest

from playground.doctor.breaks import BREAKS, WRONG_TYPES, Spot, breaks
from playground.doctor.probes import Documents, Probe
from playground.doctor.sites import Site

D7 = "http://json-schema.org/draft-07/schema#"  # dependencies, additionalItems
I = {"type": "integer"}  # noqa: E741
A = {"type": "object", "properties": {"a": I}}
AB = {"type": "object", "properties": {"a": I, "b": I}}
# `k` chooses the branch; the valid document has k "a", so `then` of IS_A applies, and
# `else` of IS_B.
KIND = {"type": "object", "properties": {"k": {"enum": ["a", "b"]}, "x": I}, "required": ["k"]}
IS_A = {"properties": {"k": {"const": "a"}}}
IS_B = {"properties": {"k": {"const": "b"}}}

# (keyword, schema with it at the root, the validator its break fails)
ROWS: list[tuple[str, dict[str, Any], str]] = [
    ("minimum", {"type": "integer", "minimum": 3}, "minimum"),
    ("exclusiveMinimum", {"type": "integer", "exclusiveMinimum": 3}, "exclusiveMinimum"),
    ("maximum", {"type": "integer", "maximum": 3}, "maximum"),
    ("exclusiveMaximum", {"type": "integer", "exclusiveMaximum": 3}, "exclusiveMaximum"),
    ("multipleOf", {"type": "integer", "multipleOf": 3}, "multipleOf"),
    ("minLength", {"type": "string", "minLength": 2}, "minLength"),
    ("maxLength", {"type": "string", "maxLength": 2}, "maxLength"),
    ("pattern", {"type": "string", "pattern": "^[A-Z]{3}$"}, "pattern"),
    ("format", {"type": "string", "format": "email"}, "format"),
    ("enum", {"enum": ["a", "b"]}, "enum"),
    ("const", {"const": "a"}, "const"),
    ("required", {**A, "required": ["a"]}, "required"),
    ("minItems", {"type": "array", "items": I, "minItems": 2}, "minItems"),
    ("maxItems", {"type": "array", "items": I, "maxItems": 1}, "maxItems"),
    ("minContains", {"type": "array", "contains": I, "minContains": 2}, "minContains"),
    ("maxContains", {"type": "array", "contains": I, "maxContains": 1}, "maxContains"),
    ("uniqueItems", {"type": "array", "items": I, "uniqueItems": True}, "uniqueItems"),
    ("minProperties", {"type": "object", "minProperties": 1}, "minProperties"),
    ("maxProperties", {**A, "required": ["a"], "maxProperties": 1}, "maxProperties"),
    ("additionalProperties", {**A, "additionalProperties": False}, "additionalProperties"),
    ("unevaluatedProperties", {**A, "unevaluatedProperties": False}, "unevaluatedProperties"),
    ("propertyNames", {"type": "object", "propertyNames": {"maxLength": 3}}, "maxLength"),
    ("patternProperties", {"type": "object", "patternProperties": {"^n_": I}}, "type"),
    ("dependentRequired", {**AB, "dependentRequired": {"a": ["b"]}}, "dependentRequired"),
    ("dependencies", {**AB, "$schema": D7, "dependencies": {"a": ["b"]}}, "dependencies"),
    ("dependentSchemas", {**AB, "dependentSchemas": {"a": {"required": ["b"]}}}, "required"),
    ("not", {"type": "integer", "not": {"const": 0}}, "not"),
    ("items", {"type": "array", "items": I, "minItems": 1}, "type"),
    ("prefixItems", {"type": "array", "prefixItems": [I], "minItems": 1}, "type"),
    ("additionalItems", {"$schema": D7, "type": "array", "items": [I], "additionalItems": False},
     "additionalItems"),
    ("unevaluatedItems", {"type": "array", "prefixItems": [I], "unevaluatedItems": False},
     "unevaluatedItems"),
    ("contains", {"type": "array", "contains": I}, "contains"),
    ("properties", {**A, "required": ["a"]}, "type"),
    ("then", {**KIND, "if": IS_A, "then": {"required": ["x"]}}, "required"),
    ("else", {**KIND, "if": IS_B, "else": {"required": ["x"]}}, "required"),
]


def test_every_keyword_of_the_table_has_a_row():
    assert sorted(keyword for keyword, _, _ in ROWS) == sorted(BREAKS)


# Valid values the instance builder does not make (it stops at one item, and adds no
# property that is not required): the doctor probes these with the closest document
# instead, and the table must still break them.
BY_HAND: dict[str, Any] = {"minContains": [0, 0], "minProperties": {"a": 0}}


@pytest.mark.parametrize(("keyword", "schema", "violates"), ROWS, ids=[r[0] for r in ROWS])
def test_the_break_violates_its_keyword_alone(keyword, schema, violates):
    documents = Documents(schema)
    probe = documents.probe(Site((), keyword))
    assert isinstance(probe, Probe), probe
    assert (probe.valid is None) is (keyword in BY_HAND)
    valid = BY_HAND.get(keyword, probe.valid)
    assert documents.validator.is_valid(valid)
    own = BREAKS[keyword](Spot(schema, schema[keyword], valid, documents._instance))
    violated = [{e.validator for e in documents.validator.iter_errors(value)} for value in own]
    assert {violates} in violated, violated
    if probe.valid is not None:  # the doctor's document is the table's first such break
        assert probe.document == own[violated.index({violates})]


@pytest.mark.parametrize(("keyword", "spot"), [
    ("minimum", Spot({"minimum": "3"}, "3", 3, lambda node: 0)),  # not a number
    ("minLength", Spot({"minLength": 2}, 2, 5, lambda node: 0)),  # not a string
    ("required", Spot({"required": ["a"]}, ["a"], [], lambda node: 0)),  # not an object
    ("then", Spot({"then": True}, True, {}, lambda node: 0)),  # no keywords to break
])
def test_a_break_that_does_not_fit_the_value_offers_nothing_of_its_own(keyword, spot):
    assert BREAKS[keyword](spot) == []


def test_every_keyword_is_also_tried_with_parts_broken_and_other_types():
    spot = Spot({"$ref": "#/$defs/x"}, "#/$defs/x", {"a": 1}, lambda node: 0)
    found = breaks(spot, "$ref")  # not in the table: only what every keyword gets
    assert found[:len(WRONG_TYPES)] == [{"a": wrong} for wrong in WRONG_TYPES]
    assert found[len(WRONG_TYPES):] == [w for w in WRONG_TYPES if w != {"a": 1}]
