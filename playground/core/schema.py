"""JSON Schema, checked and applied: the meta-schema check, local `$ref`s, the validator
verdicts use (formats checked, remote references never fetched), and the schema walkers.

One resolver for `$ref`, `resolve_ref` (through `referencing`, as the validator itself
resolves), so that the ref check, the cycle check and the doctor's documents never
disagree on what a reference names. What a schema's `$ref`s may do: point inside the
schema, and never loop without progress. A remote (`http:`), `file:` or relative
(`other.json`) reference would make validation reach outside the server, so it is refused
when the schema is checked, with how to inline it. A cycle of references that applies to
the same value again and again (`a` is `{"$ref": "#/$defs/a"}`, or `{"allOf": [{"$ref":
...}]}` back to itself) never ends: jsonschema recursed until RecursionError ("engine
error: AssertionError" in places). A recursive schema that descends into a property or
item on the way is fine, and kept.

Stdlib, jsonschema, referencing and RE2 (`linear_re`, for patterns) only: constraints,
judging and the doctor all use it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
import threading
import types
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from cachetools import LRUCache

from playground.errors import ConstraintError

if TYPE_CHECKING:
    import jsonschema.protocols
    import referencing


def parse_json(text: str, mode: str) -> Any:
    """An editor's JSON (a schema, a tool set), or ConstraintError with its line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConstraintError(
            f"{mode}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def json_objects(node: Any, path: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object in a JSON tree with its JSON path, parents before children."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from json_objects(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from json_objects(value, f"{path}[{index}]")


Keys = tuple[str | int, ...]  # where a node is: keys and indexes from the root

# Keywords whose value is one subschema, a list of them, or a map of name -> subschema.
ONE_SUBSCHEMA = ("additionalProperties", "additionalItems", "unevaluatedProperties",
                 "unevaluatedItems", "contains", "propertyNames", "not", "if", "then", "else",
                 "items")
LIST_SUBSCHEMAS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
MAP_SUBSCHEMAS = ("properties", "patternProperties", "$defs", "definitions",
                  "dependentSchemas")
# Keywords whose subschemas apply to the same value as the schema holding them.
SAME_VALUE_LISTS = ("allOf", "anyOf", "oneOf")
SAME_VALUE_ONE = ("not", "if", "then", "else")


def schema_children(node: Any) -> Iterator[tuple[Keys, Any]]:
    """The subschemas directly inside a schema node, each with its keys from `node`, in
    the node's key order (`$ref` is not followed: see `resolve_ref`)."""
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in MAP_SUBSCHEMAS and isinstance(value, dict):
            yield from (((key, name), sub) for name, sub in value.items()
                        if isinstance(sub, dict | bool))
        elif key in LIST_SUBSCHEMAS and isinstance(value, list):
            yield from (((key, index), sub) for index, sub in enumerate(value)
                        if isinstance(sub, dict | bool))
        elif key in ONE_SUBSCHEMA and isinstance(value, dict | bool):
            yield (key,), value
        elif key == "dependencies" and isinstance(value, dict):
            # Draft 7's dependencies mixes subschemas with lists of names: only the former.
            yield from (((key, name), sub) for name, sub in value.items()
                        if isinstance(sub, dict))


def keys_path(keys: Keys, root: str = "$") -> str:
    """`keys` written as `json_objects` writes paths (`$.$defs.a[0]`), for messages."""
    return root + "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in keys)


# ---- $ref: one resolver, through referencing -----------------------------------------

INLINE_HOW = ('copy the referenced schema under "$defs" (e.g. "$defs": {"item": {...}}) and '
              'point to it with "$ref": "#/$defs/item"; remote and file references are never '
              "fetched")


def check_ref(ref: str, path: str) -> None:
    """Refuse a `$ref` that does not point inside this schema."""
    if not ref.startswith("#"):
        raise ConstraintError(f"json: $ref {ref[:80]!r} at {path} points outside the schema: "
                              f"{INLINE_HOW}")


def _specification(schema: Any, dialect: str | None = None) -> Any:
    import referencing.jsonschema

    if dialect is None:
        found = schema.get("$schema") if isinstance(schema, dict) else None
        dialect = found if isinstance(found, str) else ""
    return referencing.jsonschema.specification_with(
        dialect, default=referencing.jsonschema.DRAFT202012)


class SchemaRefs:
    """The local `$ref`s of one root schema, resolved as the validator resolves them.

    A JSON pointer fragment is percent-decoded, then split on `/`, then `~1` and `~0`
    unescaped (RFC 6901 section 6, referencing's order: `%2F` is a separator); `#name`
    finds a `$anchor` (draft 2019-09 on) or a fragment `$id` (drafts 6-7) where referencing
    knows them. Every pointer starts at the root, also under a nested `$id` (what the
    checks have always assumed). Nothing outside the schema is fetched.
    """

    def __init__(self, root: Any, dialect: str | None = None) -> None:
        import referencing

        self.root = root
        resource = _specification(root, dialect).create_resource(root)
        self._resolver = referencing.Registry(retrieve=_refuse_remote).resolver_with_root(
            resource)
        self._paths: dict[int, Keys] | None = None

    def resolve(self, ref: str, at: str = "$") -> tuple[Any, Keys]:
        """The node `ref` names and its keys from the root; ConstraintError naming `at`
        (where the `$ref` is) if it points outside the schema or nowhere."""
        import referencing.exceptions

        check_ref(ref, at)
        nowhere = ConstraintError(f"json: $ref {ref!r} at {at} points nowhere")
        try:
            target = self._resolver.lookup(ref).contents
        # ValueError/TypeError: referencing indexes a list (or a string) with int(segment).
        except (referencing.exceptions.Unresolvable, ValueError, TypeError):
            raise nowhere from None
        fragment = ref[1:]
        if not fragment:
            return target, ()
        if fragment.startswith("/"):
            keys = self._pointer_keys(fragment)
            if keys is None:
                raise nowhere
            return target, keys
        keys = self._path_of(target)
        if keys is None:
            raise nowhere
        return target, keys

    def _pointer_keys(self, pointer: str) -> Keys | None:
        """The keys of a pointer referencing has just followed; None where it went into a
        string (referencing indexes any sequence: "#/type/0" is a letter, not a schema)."""
        keys: list[str | int] = []
        node = self.root
        for segment in unquote(pointer[1:]).split("/"):
            if isinstance(node, str):
                return None
            key: str | int = (int(segment) if isinstance(node, list)
                              else segment.replace("~1", "/").replace("~0", "~"))
            node = node[key]
            keys.append(key)
        return tuple(keys)

    def _path_of(self, target: Any) -> Keys | None:
        """Where an anchored node is: the first path to it, by identity."""
        if self._paths is None:
            self._paths = {}
            stack: list[tuple[Any, Keys]] = [(self.root, ())]
            while stack:
                node, keys = stack.pop()
                if isinstance(node, dict):
                    self._paths.setdefault(id(node), keys)
                    stack.extend((value, (*keys, key)) for key, value in node.items())
                elif isinstance(node, list):
                    stack.extend((value, (*keys, i)) for i, value in enumerate(node))
        return self._paths.get(id(target))


# The few roots last resolved, by identity: the doctor resolves the same refs many times.
# Each entry holds its root, so the root's id is not reused while it is remembered.
_REFS: LRUCache[int, SchemaRefs] = LRUCache(maxsize=8)
_REFS_LOCK = threading.Lock()  # cachetools caches are not thread-safe


def schema_refs(root: Any) -> SchemaRefs:
    """The resolver for `root` (remembered for the last few roots; a root must not be
    changed after its refs are resolved)."""
    with _REFS_LOCK:
        found = _REFS.get(id(root))
    if found is not None and found.root is root:
        return found
    made = SchemaRefs(root)
    with _REFS_LOCK:
        _REFS[id(root)] = made
    return made


def resolve_ref(root: Any, ref: str, at: str = "$") -> tuple[Any, Keys]:
    """The node a local `$ref` names in `root`, and its keys from the root.

    ConstraintError naming `at` (where the `$ref` is) for a ref outside the schema (with
    how to inline it) or one that points nowhere. See SchemaRefs for the rules.
    """
    return schema_refs(root).resolve(ref, at)


def _same_value(node: dict[str, Any], refs: SchemaRefs) -> list[tuple[str, Any]]:
    """(how, subschema) pairs applied to the same value as `node`."""
    found: list[tuple[str, Any]] = []
    ref = node.get("$ref")
    if isinstance(ref, str):
        try:
            target, _ = refs.resolve(ref)
        except ConstraintError:  # refused by the ref check, not here
            target = None
        if isinstance(target, dict):
            found.append((ref, target))
    for key in SAME_VALUE_LISTS:
        if isinstance(node.get(key), list):
            found += [(f"{key}[{i}]", sub) for i, sub in enumerate(node[key])
                      if isinstance(sub, dict)]
    found += [(key, node[key]) for key in SAME_VALUE_ONE if isinstance(node.get(key), dict)]
    return found


def check_cycles(root: Any, refs: SchemaRefs | None = None) -> None:
    """Refuse a reference cycle that never moves to a property or an item."""
    if not isinstance(root, dict):
        return
    refs = schema_refs(root) if refs is None else refs
    done: set[int] = set()

    def visit(node: dict[str, Any], trail: list[tuple[int, str]]) -> None:
        if id(node) in done:
            return
        for how, sub in _same_value(node, refs):
            ids = [seen for seen, _ in trail]
            if id(sub) in ids:
                loop = [step for _, step in trail[ids.index(id(sub)) + 1:]] + [how]
                raise ConstraintError(
                    f"json: $ref cycle {' -> '.join(loop)[:200]} applies to the same value "
                    "forever; let the recursion go through a property or an array item")
            visit(sub, [*trail, (id(sub), how)])
        done.add(id(node))

    for _, node in json_objects(root):  # every object, as a start of a possible cycle
        visit(node, [(id(node), "")])


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


# ---- patterns: ECMA-262 as far as RE2 reads it ---------------------------------------
# jsonschema searches `pattern` and `patternProperties` with Python `re`, whose `\d` and
# `\w` are Unicode ("٣" is a digit) and which has no `\p{L}` (it raised re.error out of the
# validator). JSON Schema patterns are ECMA-262 regexes, whose classes are ASCII: RE2 reads
# them so, as do the regex mode's verdicts, the doctor's dialect notes and xgrammar (the
# official suite's pattern, patternProperties and optional/ecmascript-regex files). Python
# `re` stays for what RE2 refuses (lookarounds, backreferences).


def _search(pattern: str, text: str) -> bool:
    from playground.core import linear_re

    found = linear_re.search(pattern, text)
    return bool(re.search(pattern, text)) if found is None else found


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield _jsonschema().ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any,
                        schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, additional: Any, instance: Any,
                           schema: dict[str, Any]) -> Iterator[Any]:
    """jsonschema's own keyword and messages, with the names `patternProperties` matches
    weeded out as `_pattern_properties` matches them (jsonschema's weeding uses `re`)."""
    if not validator.is_type(instance, "object"):
        return
    named, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
    extras = [key for key in instance
              if key not in named and not any(_search(p, key) for p in patterns)]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif additional is False and extras:
        jsonschema = _jsonschema()
        if patterns:
            verb = "does" if len(extras) == 1 else "do"
            yield jsonschema.ValidationError(
                f"{', '.join(repr(e) for e in sorted(extras))} {verb} not match any of the "
                f"regexes: {', '.join(repr(p) for p in sorted(patterns))}")
        else:
            names, verb = jsonschema._utils.extras_msg(sorted(extras, key=str))
            yield jsonschema.ValidationError(
                f"Additional properties are not allowed ({names} {verb} unexpected)")


@lru_cache(maxsize=8)
def _with_ecma_patterns(cls: type) -> type:
    keywords = {"pattern": _pattern, "patternProperties": _pattern_properties,
                "additionalProperties": _additional_properties}
    known = getattr(cls, "VALIDATORS", {})
    extended: type = _jsonschema().validators.extend(
        cls, {k: v for k, v in keywords.items() if k in known})
    return extended


def _validator(schema: dict[str, Any] | bool) -> jsonschema.protocols.Validator:
    import referencing

    jsonschema = _jsonschema()
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    # An empty registry whose retrieve always refuses: remote $refs are never fetched.
    registry = referencing.Registry(retrieve=_refuse_remote)
    return _with_ecma_patterns(cls)(schema, registry=registry,  # type: ignore[no-any-return]
                                    format_checker=_format_checker(cls))


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
        # The draft the validator chose, also for a $schema it does not know.
        refs = SchemaRefs(schema, cls.META_SCHEMA.get("$id", ""))
        _check_local_refs(schema, refs)
        check_cycles(schema, refs)


def _check_local_refs(schema: dict[str, Any], refs: SchemaRefs) -> None:
    # Every object, not only subschemas: a $ref anywhere is one a pointer could reach.
    for path, node in json_objects(schema):
        ref = node.get("$ref")
        if isinstance(ref, str):
            refs.resolve(ref, f"{path}.$ref")  # nothing outside the schema is ever fetched


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
