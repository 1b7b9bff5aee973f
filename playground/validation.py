"""Judges generated text against a constraint. Imports no engine and no model.

The verdict is independent of how the text was produced, so the same function judges
constrained and unconstrained output, and any engine's.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import lark

from playground import linear_re, schema_refs
from playground.constraints import (
    Choice,
    Constraint,
    ConstraintError,
    JsonSchema,
    LarkGrammar,
    Regex,
    json_objects,
)

if TYPE_CHECKING:
    import jsonschema.protocols
    import referencing

# unjudged: validation ran past its time limit (playground.judge); the errors say why.
Status = Literal["valid", "invalid", "truncated", "error", "unjudged"]


@dataclass(frozen=True)
class Verdict:
    status: Status
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "valid"


def validate(constraint: Constraint, text: str, finish_reason: str | None = "stop",
             engine_error: str | None = None, backend: str = "xgrammar",
             any_whitespace: bool = True) -> Verdict:
    """Judge `text`.

    Output cut at max tokens is never "valid": it is "truncated" while it is still a
    viable prefix of the constraint's language, as the engine's own `backend` matcher
    sees it, and "invalid" once it has left that language (it was never on the way to a
    match, so calling it cut short would hide an escaped output).
    """
    if finish_reason == "error" or engine_error:
        return Verdict("error", [engine_error or "the engine failed this request"])
    errors = errors_in(constraint, text)
    if finish_reason != "length":
        return Verdict("invalid" if errors else "valid", errors)
    prefix = prefix_check(constraint, text, backend, any_whitespace)
    if prefix.accepted is None and isinstance(constraint, JsonSchema) and errors:
        prefix = _json_prefix_check(text, backend, any_whitespace) or prefix
    if prefix.accepted is False:
        return Verdict("invalid", [f"stopped at max tokens, and not on the way to a match: "
                                   f"{prefix.message}", *errors])
    cut = ["stopped at max tokens before the output was complete"]
    if prefix.accepted is None:
        cut.append(f"whether it was still on the way to a match is unknown: {prefix.message}")
    return Verdict("truncated", cut + errors)


@dataclass(frozen=True)
class PrefixCheck:
    accepted: bool | None  # None: no matcher could compile the constraint
    message: str | None = None


def prefix_check(constraint: Constraint, text: str, backend: str = "xgrammar",
                 any_whitespace: bool = True) -> PrefixCheck:
    """Whether `text` can still grow into a match, by the backend's matcher on bytes."""
    from playground.matcher import BACKENDS

    tried: list[str] = []
    # The engine's backend first; the other where it cannot compile the constraint.
    for name in dict.fromkeys([backend if backend in BACKENDS else "xgrammar", *BACKENDS]):
        try:
            found = _text_matcher(constraint, name, any_whitespace).test(text)
        except ConstraintError as exc:
            tried.append(str(exc))
            continue
        where = "" if name == backend else f" (checked with {name})"
        return PrefixCheck(found.accepted, (found.message or "") + where)
    return PrefixCheck(None, "; ".join(tried))


def _json_prefix_check(text: str, backend: str, any_whitespace: bool) -> PrefixCheck | None:
    """For a schema no matcher compiles: text that no more output can make valid (a
    finished value other than a number, or no JSON at all), else None (unknown)."""
    try:
        value = json.loads(text)
    except ValueError:
        found = prefix_check(JsonSchema({}), text, backend, any_whitespace)
        if found.accepted is False:
            return PrefixCheck(False, f"not on the way to any JSON document: {found.message}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return PrefixCheck(False, "a finished JSON value that breaks the schema (only "
                                  "whitespace could follow)")
    return None


@lru_cache(maxsize=32)
def _text_matcher(constraint: Constraint, backend: str, any_whitespace: bool) -> Any:
    from playground.matcher import Matcher

    return Matcher.create(constraint, None, backend, any_whitespace)  # type: ignore[arg-type]


def errors_in(constraint: Constraint, text: str) -> list[str]:
    match constraint:
        case Choice(choices=choices):
            if text in choices:
                return []
            return [f"{_short(text)} is not one of the {len(choices)} choices"]
        case Regex(pattern=pattern):
            # RE2 in linear time; Python `re` only for what RE2 refuses (backreferences,
            # lookarounds), which playground.judge runs in a worker under a time limit.
            matched = linear_re.fullmatch(pattern, text)
            if matched is None:
                matched = re.fullmatch(pattern, text) is not None
            if matched:
                return []
            return [f"{_short(text)} does not fully match /{pattern}/"]
        case JsonSchema():
            return json_errors(constraint.schema, text)
        case LarkGrammar(grammar=grammar, start=start):
            return grammar_errors(lark_parser(grammar, start), text)
    raise TypeError(f"not a constraint: {constraint!r}")


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


# ---- Lark grammar ------------------------------------------------------------------

# Bounded in entries, and in memory by --max-constraint-chars per grammar; built and used
# in playground.bounded's worker processes, which are replaced past a time limit.
@lru_cache(maxsize=16)
def lark_parser(grammar: str, start: str = "start") -> lark.Lark:
    """Build (once) the Earley parser of a user's grammar, or raise with line:column."""
    try:
        return lark.Lark(grammar, start=start, parser="earley")
    except lark.exceptions.UnexpectedInput as exc:
        raise ConstraintError(
            f"grammar: syntax error at line {exc.line}, column {exc.column}: "
            f"{str(exc).splitlines()[0]}") from None
    except (lark.exceptions.GrammarError, lark.exceptions.ConfigurationError) as exc:
        raise ConstraintError(f"grammar: {_one_line(str(exc))}") from None
    except KeyError as exc:
        raise ConstraintError(f"grammar: undefined name {exc}") from None


def grammar_errors(parser: lark.Lark, text: str) -> list[str]:
    try:
        parser.parse(text)
    except lark.exceptions.UnexpectedEOF:
        return [f"input ends early, at line {text.count(chr(10)) + 1}: the grammar expects more"]
    except lark.exceptions.UnexpectedInput as exc:
        return [f"does not parse at line {exc.line}, column {exc.column}: "
                f"{_one_line(exc.get_context(text))}"]
    return []


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _one_line(message: str) -> str:
    return " ".join(message.split())
