"""One `$ref` resolver: validation, the ref check, the cycle check and the doctor's
documents (`Instances`) agree on what every reference names, refuses or loops on."""

from __future__ import annotations

from typing import Any

import pytest

from playground.core.schema import (
    check_cycles,
    check_schema,
    instance_errors,
    json_objects,
    keys_path,
    resolve_ref,
    schema_children,
)
from playground.doctor.instances import Instances, within
from playground.errors import ConstraintError, NoInstance

DRAFT7 = "http://json-schema.org/draft-07/schema#"


def at(root: Any, keys: tuple[Any, ...]) -> Any:
    for key in keys:
        root = root[key]
    return root


# (schema, ref, keys of its target, the one value the target allows)
RESOLVED = [
    pytest.param({"$defs": {"a b": {"const": 1}}}, "#/$defs/a%20b", ("$defs", "a b"), 1,
                 id="percent-encoded space"),
    pytest.param({"$defs": {"%": {"const": 2}}}, "#/$defs/%25", ("$defs", "%"), 2,
                 id="percent-encoded percent"),
    pytest.param({"$defs": {"a/b": {"const": 3}}}, "#/$defs/a~1b", ("$defs", "a/b"), 3,
                 id="~1 is a slash"),
    pytest.param({"$defs": {"m~n": {"const": 4}}}, "#/$defs/m~0n", ("$defs", "m~n"), 4,
                 id="~0 is a tilde"),
    pytest.param({"$defs": {"a/b": {"const": 5}}}, "#/$defs/a%7E1b", ("$defs", "a/b"), 5,
                 id="percent-decoded before ~ unescaping (RFC 6901 section 6)"),
    pytest.param({"$defs": {"~1": {"const": 6}}}, "#/$defs/~01", ("$defs", "~1"), 6,
                 id="~01 is ~1, not a slash"),
    pytest.param({"$defs": {"outer": {"$defs": {"inner": {"const": 7}}}}},
                 "#/$defs/outer/$defs/inner", ("$defs", "outer", "$defs", "inner"), 7,
                 id="$defs of $defs"),
    pytest.param({"$defs": {"outer": {"$defs": {"inner": {"$ref": "#/$defs/leaf"}}},
                            "leaf": {"const": 8}}},
                 "#/$defs/outer/$defs/inner", ("$defs", "outer", "$defs", "inner"), 8,
                 id="a ref inside $defs of $defs"),
    pytest.param({"$defs": {"x": {"$anchor": "here", "const": 9}}}, "#here", ("$defs", "x"),
                 9, id="$anchor"),
    pytest.param({"$schema": DRAFT7, "definitions": {"a b": {"const": 10}}},
                 "#/definitions/a%20b", ("definitions", "a b"), 10, id="draft 7 definitions"),
]


def _referring(schema: dict[str, Any], ref: str) -> dict[str, Any]:
    # Draft 7 ignores a $ref's siblings: the ref goes in allOf, the same for every draft.
    return {**schema, "allOf": [{"$ref": ref}]}


@pytest.mark.parametrize(("schema", "ref", "keys", "value"), RESOLVED)
def test_every_resolver_names_the_same_node(schema, ref, keys, value):
    root = _referring(schema, ref)
    check_schema(root)  # the ref check and the cycle check accept it
    target, found = resolve_ref(root, ref)
    assert found == keys and target is at(root, keys)
    assert Instances(root).resolve(ref) is target  # by identity: the doctor's focus
    # The validator resolves it the same way: the target's one value, and nothing else.
    assert instance_errors(root, value) == []
    assert instance_errors(root, "something else") != []
    assert Instances(root).build()[0] == value


@pytest.mark.parametrize(("schema", "ref", "where"), [
    pytest.param({"$ref": "#/$defs/missing"}, "#/$defs/missing", "$.$ref", id="missing"),
    pytest.param({"$defs": {"a b": {}}, "$ref": "#/$defs/a%2520b"}, "#/$defs/a%2520b",
                 "$.$ref", id="decoded once only"),
    pytest.param({"$defs": {"a/b": {}}, "$ref": "#/$defs/a/b"}, "#/$defs/a/b", "$.$ref",
                 id="unescaped slash splits"),
    pytest.param({"$defs": {"o": {"$defs": {"i": {"$ref": "#/$defs/i"}}}}}, "#/$defs/i",
                 "$.$defs.o.$defs.i.$ref", id="pointers start at the root"),
    pytest.param({"allOf": [{}], "$ref": "#/allOf/x"}, "#/allOf/x", "$.$ref",
                 id="a word as a list index"),
    pytest.param({"type": "object", "$ref": "#/type/0"}, "#/type/0", "$.$ref",
                 id="into a string"),
    pytest.param({"$ref": "#nowhere"}, "#nowhere", "$.$ref", id="no such anchor"),
])
def test_an_unresolvable_ref_is_refused_naming_its_path(schema, ref, where):
    message = f"$ref {ref!r} at {where} points nowhere"
    with pytest.raises(ConstraintError, match="points nowhere") as caught:
        check_schema(schema)
    assert message in str(caught.value)
    with pytest.raises(ConstraintError, match="points nowhere") as caught:
        resolve_ref(schema, ref, where)
    assert message in str(caught.value)
    with pytest.raises(NoInstance, match="points nowhere"):
        Instances(schema).resolve(ref)


@pytest.mark.parametrize("ref", ["http://example.com/s.json", "file:///etc/passwd",
                                 "other.json#/a", "//example.com/s"])
def test_a_remote_ref_is_refused_everywhere(ref):
    schema = {"properties": {"a": {"$ref": ref}}}
    with pytest.raises(ConstraintError, match="points outside the schema") as caught:
        check_schema(schema)
    assert "at $.properties.a.$ref" in str(caught.value) and "$defs" in str(caught.value)
    with pytest.raises(ConstraintError, match="points outside the schema"):
        resolve_ref(schema, ref)
    with pytest.raises(NoInstance, match="remote"):
        Instances(schema).resolve(ref)
    # The validator never fetches it either.
    assert "never fetched" in instance_errors(schema, {"a": 1})[0]


CYCLES = [
    pytest.param({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, id="self"),
    pytest.param({"$ref": "#"}, id="the root"),
    pytest.param({"$defs": {"a b": {"allOf": [{"$ref": "#/$defs/a%20b"}]}},
                  "$ref": "#/$defs/a%20b"}, id="percent-encoded, through allOf"),
    pytest.param({"$defs": {"a/b": {"anyOf": [{"$ref": "#/$defs/m~0n"}]},
                            "m~n": {"not": {"$ref": "#/$defs/a~1b"}}},
                  "$ref": "#/$defs/a~1b"}, id="~1 and ~0"),
    pytest.param({"$defs": {"o": {"$defs": {"i": {"$ref": "#/$defs/o"}}, "$ref":
                                  "#/$defs/o/$defs/i"}}, "$ref": "#/$defs/o"},
                 id="through $defs of $defs"),
    pytest.param({"$defs": {"x": {"$anchor": "x", "oneOf": [{"$ref": "#x"}]}},
                  "$ref": "#x"}, id="an anchor"),
]


@pytest.mark.parametrize("schema", CYCLES)
def test_a_cycle_without_progress_is_refused(schema):
    with pytest.raises(ConstraintError, match="applies to the same value forever"):
        check_schema(schema)
    with pytest.raises(ConstraintError, match="applies to the same value forever"):
        check_cycles(schema)
    # The doctor follows each ref of the loop to the node the cycle check did.
    for _, node in json_objects(schema):
        if isinstance(node.get("$ref"), str):
            assert Instances(schema).resolve(node["$ref"]) is resolve_ref(
                schema, node["$ref"])[0]


RECURSIVE = [
    pytest.param({"$defs": {"node": {"type": "object", "properties": {
        "next": {"$ref": "#/$defs/node"}}}}, "$ref": "#/$defs/node"},
        {"next": {"next": {}}}, {"next": 1}, id="through a property"),
    pytest.param({"$defs": {"a b": {"type": "array", "items": {"$ref": "#/$defs/a%20b"}}},
                  "$ref": "#/$defs/a%20b"}, [[[]], []], [[1]], id="through items, encoded"),
    pytest.param({"type": "object", "additionalProperties": {"$ref": "#"}},
                 {"a": {"b": {}}}, {"a": 1}, id="the root, through additionalProperties"),
]


@pytest.mark.parametrize(("schema", "good", "bad"), RECURSIVE)
def test_a_recursive_schema_through_a_property_or_item_is_kept(schema, good, bad):
    check_schema(schema)
    check_cycles(schema)
    document, _ = Instances(schema).build()
    assert instance_errors(schema, document) == []
    assert instance_errors(schema, good) == []
    assert instance_errors(schema, bad) != []


def test_the_doctor_reaches_a_node_behind_an_encoded_ref():
    schema = {"$defs": {"a b": {"type": "object", "properties": {"n": {"type": "integer"}}}},
              "type": "object", "properties": {"x": {"$ref": "#/$defs/a%20b"}}}
    focus = schema["$defs"]["a b"]["properties"]["n"]
    document, location = Instances(schema).build(focus)
    assert location == ["x", "n"] and document == {"x": {"n": 0}}


def test_walkers_agree_on_the_tree():
    schema = {"properties": {"a": {"items": [{"type": "string"}], "not": True}},
              "dependencies": {"a": ["b"], "c": {"required": ["d"]}}, "enum": [{"x": 1}]}
    children = list(schema_children(schema))
    assert [keys for keys, _ in children] == [("properties", "a"), ("dependencies", "c")]
    inner = schema["properties"]["a"]
    assert [keys for keys, _ in schema_children(inner)] == [("items", 0), ("not",)]
    # json_objects sees every object, data included; `within` only subschemas.
    assert ("$.enum[0]", {"x": 1}) in list(json_objects(schema))
    assert id(schema["enum"][0]) not in within(schema)
    assert keys_path(("$defs", "a b", "items", 0)) == "$.$defs.a b.items[0]"
