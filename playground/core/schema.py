"""JSON Schema, checked and applied: the meta-schema check, local `$ref`s, the validator
verdicts use (formats checked, remote references never fetched), and the schema walker.

Stdlib, jsonschema and referencing only: constraints, judging and the doctor all use it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from playground.core import schema_refs
from playground.errors import ConstraintError

if TYPE_CHECKING:
    import jsonschema.protocols
    import referencing


def json_objects(node: Any, path: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object in a JSON tree with its JSON path, parents before children."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from json_objects(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from json_objects(value, f"{path}[{index}]")


# ---- JSON Schema -------------------------------------------------------------------
# jsonschema is imported where used. At its own import it loads its IRI format checker
# (rfc3987-syntax builds a Lark parser then: ~2 s, twice what `check` may take), so that
# one import goes without it and the playground's format checker loads it on first use.

IRI_FORMATS = {"iri": "iri", "iri-reference": "iri_reference"}
IRI_DRAFTS = {"Draft7Validator", "Draft201909Validator", "Draft202012Validator"}


@lru_cache(maxsize=1)
def _jsonschema() -> types.ModuleType:
    """jsonschema, imported without its eager IRI checker (none of its other formats).

    jsonschema's own FORMAT_CHECKER then lacks the IRI formats in this process (vLLM and
    gradio use no format checking); the playground's `_format_checker` has them.
    """
    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        return importlib.import_module("jsonschema")
    # For this one import only: None in sys.modules makes `import rfc3987_syntax` fail.
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]
    try:
        return importlib.import_module("jsonschema")
    finally:
        del sys.modules["rfc3987_syntax"]  # later imports load the real module


def _iri_check(rule: str) -> Callable[[object], bool]:
    def check(instance: object) -> bool:
        if not isinstance(instance, str):
            return True
        from rfc3987_syntax import is_valid_syntax

        return is_valid_syntax(rule, instance)

    return check


@lru_cache(maxsize=8)
def _format_checker(cls: type) -> Any:
    """The draft's own format checker, with the IRI formats checked on first use."""
    checker = _jsonschema().FormatChecker()
    checker.checkers = dict(cls.FORMAT_CHECKER.checkers)
    if cls.__name__ in IRI_DRAFTS and importlib.util.find_spec("rfc3987_syntax") is not None:
        for name, rule in IRI_FORMATS.items():
            checker.checks(name, raises=ValueError)(_iri_check(rule))
    return checker


def _refuse_remote(uri: str) -> referencing.Resource:
    import referencing.exceptions

    raise referencing.exceptions.NoSuchResource(ref=uri)


def _validator(schema: dict[str, Any] | bool) -> jsonschema.protocols.Validator:
    import referencing

    jsonschema = _jsonschema()
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    # An empty registry whose retrieve always refuses: remote $refs are never fetched.
    registry = referencing.Registry(retrieve=_refuse_remote)
    return cls(schema, registry=registry, format_checker=_format_checker(cls))


def schema_validator(schema: dict[str, Any] | bool) -> jsonschema.protocols.Validator:
    """The validator verdicts use (formats checked, remote $refs refused), for callers
    that need its errors as objects (the doctor reads which keyword each one breaks)."""
    return _validator(schema)


def check_schema(schema: dict[str, Any] | bool) -> None:
    """Raise ConstraintError naming the schema path of the first problem."""
    jsonschema = _jsonschema()
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConstraintError(f"json: schema invalid at {exc.json_path}: {exc.message}") from None
    if isinstance(schema, dict):
        _check_local_refs(schema, cls)
        schema_refs.check_cycles(schema)


def _check_local_refs(schema: dict[str, Any], cls: type) -> None:
    import referencing.exceptions
    import referencing.jsonschema

    spec = referencing.jsonschema.specification_with(
        cls.META_SCHEMA.get("$id", ""), default=referencing.jsonschema.DRAFT202012)
    resource = spec.create_resource(schema)
    resolver = referencing.Registry(retrieve=_refuse_remote).with_resource(
        "urn:playground:root", resource).resolver("urn:playground:root")
    for path, node in json_objects(schema):
        ref = node.get("$ref")
        if not isinstance(ref, str):
            continue
        path = f"{path}.$ref"
        schema_refs.check_ref(ref, path)  # nothing outside the schema is ever fetched
        try:
            resolver.lookup(ref)
        except referencing.exceptions.Unresolvable:
            raise ConstraintError(f"json: $ref {ref!r} at {path} points nowhere") from None


def json_errors(schema: dict[str, Any] | bool, text: str) -> list[str]:
    try:
        instance = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"not JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}"]
    return instance_errors(schema, instance)


def instance_errors(schema: dict[str, Any] | bool, instance: Any) -> list[str]:
    import referencing.exceptions

    try:
        found = sorted(_validator(schema).iter_errors(instance), key=lambda e: list(e.path))
        return [f"{error.json_path}: {error.message}" for error in found]
    except referencing.exceptions.Unresolvable as exc:
        return [f"cannot resolve $ref {exc.ref!r} (remote references are never fetched)"]
