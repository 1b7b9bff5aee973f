"""Small JSON documents for a schema: a minimal valid one, and the one spot to break.

The doctor asks each backend about documents that violate exactly one keyword. This module
proposes them: `Instances(schema).build(focus)` makes a small document that the validator
accepts and that passes through the schema node `focus` (an optional property on the way is
included, an `anyOf` branch on the way is chosen), and says where in the document that node
was instantiated. Every proposal is checked with `jsonschema` by the caller; nothing here
has to be right, only often useful. Pure Python: no engine.
"""

from __future__ import annotations

import math
import re
from typing import Any

from playground.core.schema import (
    resolve_ref,
    schema_children,
)
from playground.errors import ConstraintError, NoInstance

FORMAT_EXAMPLES: dict[str, str] = {
    "date": "2024-01-31", "date-time": "2024-01-31T12:00:00Z", "time": "12:00:00Z",
    "email": "ada@example.com", "idn-email": "ada@example.com", "hostname": "example.com",
    "idn-hostname": "example.com", "ipv4": "192.168.0.1", "ipv6": "::1",
    "uri": "https://example.com/a", "uri-reference": "/a", "iri": "https://example.com/a",
    "iri-reference": "/a", "uuid": "123e4567-e89b-12d3-a456-426614174000",
    "duration": "P1D", "regex": "a+", "json-pointer": "/a", "relative-json-pointer": "0",
    "uri-template": "/a/{b}",
}
FORMAT_VIOLATIONS: dict[str, list[str]] = {
    "date": ["2024-13-45", "yesterday"], "date-time": ["2024-01-31 noon", "yesterday"],
    "time": ["25:61:00", "noon"], "email": ["not an email", "ada.example.com"],
    "idn-email": ["not an email"], "hostname": ["-bad-.example..com", "a b"],
    "idn-hostname": ["-bad-..", "a b"], "ipv4": ["999.1.1.1", "1.2.3"],
    "ipv6": ["::g", "1:2"], "uri": ["not a uri", "//x"], "uri-reference": ["\\\\ bad"],
    "iri": ["not an iri"], "iri-reference": ["\\\\ bad"], "uuid": ["not-a-uuid", "123"],
    "duration": ["one day", "P"], "regex": ["(", "[a"], "json-pointer": ["a/b", "~"],
    "relative-json-pointer": ["/a", "x"], "uri-template": ["{", "/a/{b"],
}


_NONE = object()  # no attempt gave a document (None is a JSON value)


def subschemas(node: Any) -> list[Any]:
    """The subschemas directly inside a schema node (not following $ref)."""
    return [sub for _, sub in schema_children(node)]


def within(node: Any) -> set[int]:
    """ids of `node` and every schema node under it (not following $ref)."""
    seen: set[int] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict) and id(current) not in seen:
            seen.add(id(current))
            stack += subschemas(current)
    return seen


def string_for(pattern: str, last: bool = False) -> str:
    """A short string that `re.search(pattern, ...)` finds (best effort; checked after).

    Lookarounds and anchors are skipped, so with `last` (each class's last character,
    each alternation's last branch) the string often breaks a lookaround alone: what an
    engine that ignores lookarounds lets through."""
    import re._parser as sre  # type: ignore[import-not-found]

    try:
        return _from_parsed(sre.parse(pattern), last)
    except (re.error, NoInstance, RecursionError, TypeError, ValueError):
        return ""


def _from_parsed(parsed: Any, last: bool = False) -> str:
    import re._constants as c  # type: ignore[import-not-found]

    out: list[str] = []
    for op, arg in parsed:
        if op == c.LITERAL:
            out.append(chr(arg))
        elif op == c.NOT_LITERAL:
            out.append("a" if arg != ord("a") else "b")
        elif op == c.ANY:
            out.append("a")
        elif op == c.IN:
            out.append(_from_class(arg, last))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
            low, _high, sub = arg
            out.append(_from_parsed(sub, last) * low)
        elif op == c.SUBPATTERN:
            out.append(_from_parsed(arg[-1], last))
        elif op == c.BRANCH:
            out.append(_from_parsed(arg[1][-1 if last else 0], last))
        elif op in (c.AT, c.ASSERT, c.ASSERT_NOT):
            continue
        elif op == c.GROUPREF:
            raise NoInstance("backreference")
        else:
            raise NoInstance(f"regex operator {op}")
    return "".join(out)


def _from_class(items: list[tuple[Any, Any]], last: bool = False) -> str:
    import re._constants as c  # type: ignore[import-not-found]

    if items and items[0][0] == c.NEGATE:
        excluded = "".join(_from_class([item]) for item in items[1:] if item[0] != c.NEGATE)
        return next(ch for ch in "a0_ -Z" if ch not in excluded)
    for op, arg in reversed(items) if last else items:
        if op == c.LITERAL:
            return chr(arg)
        if op == c.RANGE:
            return chr(arg[1] if last else arg[0])
        if op == c.CATEGORY:
            return {c.CATEGORY_DIGIT: "0", c.CATEGORY_SPACE: " ", c.CATEGORY_WORD: "a",
                    c.CATEGORY_NOT_DIGIT: "a", c.CATEGORY_NOT_SPACE: "a",
                    c.CATEGORY_NOT_WORD: " "}.get(arg, "a")
    return "a"


class Instances:
    """Proposes documents for one root schema; `build(focus)` -> (document, location)."""

    def __init__(self, root: dict[str, Any] | bool, valid: Any = None) -> None:
        self.root = root
        self._valid = valid  # callable(node, value) -> bool, the validator's say
        self._focus: Any = None
        self._prefer: Any = None
        self._location: list[Any] | None = None
        self._depth = 0

    def build(self, focus: Any = None, prefer: Any = None) -> tuple[Any, list[Any] | None]:
        """A valid document reaching `focus` (a node of the schema, by identity), and the
        location (keys and indexes) where `focus` was instantiated, or None. `prefer`: a
        subschema to steer into where there is a choice (a `then` or `else` branch)."""
        self._focus, self._location, self._depth = focus, None, 0
        self._prefer = prefer
        return self.value(self.root, []), self._location

    # ---- helpers -------------------------------------------------------------------------

    def resolve(self, ref: str) -> Any:
        """The node a local `$ref` names, as the validator resolves it; NoInstance else."""
        if not ref.startswith("#"):
            raise NoInstance(f"remote $ref {ref!r}")
        try:
            return resolve_ref(self.root, ref)[0]
        except ConstraintError:
            raise NoInstance(f"$ref {ref!r} points nowhere") from None

    def reaches(self, node: Any, seen: set[int] | None = None) -> bool:
        """Whether the focus node is `node` or under it, following local $refs."""
        if self._focus is None:
            return False
        seen = set() if seen is None else seen
        stack = [node]
        while stack:
            current = stack.pop()
            if not isinstance(current, dict) or id(current) in seen:
                continue
            if current is self._focus or (current is self._prefer and current is not None):
                return True
            seen.add(id(current))
            stack += subschemas(current)
            if isinstance(current.get("$ref"), str):
                try:
                    stack.append(self.resolve(current["$ref"]))
                except NoInstance:
                    pass
        return False

    def ok(self, node: Any, value: Any) -> bool:
        return self._valid is None or self._valid(node, value)

    # ---- generation ----------------------------------------------------------------------

    def value(self, node: Any, where: list[Any]) -> Any:
        self._depth += 1
        try:
            if self._depth > 40:
                raise NoInstance("the schema nests too deep (or recurses) to build a document")
            if node is self._focus and self._location is None:
                self._location = list(where)
            return self._value(node, where)
        finally:
            self._depth -= 1

    def _value(self, node: Any, where: list[Any]) -> Any:
        if node is True or node == {}:
            return None
        if node is False:
            raise NoInstance("the schema is `false`: no document is valid")
        if not isinstance(node, dict):
            raise NoInstance("not a schema")
        if "const" in node:
            return node["const"]
        if isinstance(node.get("enum"), list) and node["enum"]:
            for option in node["enum"]:
                if self.ok(node, option):
                    return option
            return node["enum"][0]
        if isinstance(node.get("$ref"), str):
            target = self.resolve(node["$ref"])
            rest = {k: v for k, v in node.items() if k != "$ref"}
            found = self.value(target, where)
            if not _constraining(rest) or self.ok(node, found):
                return found
            return self._plain(_merge(target, rest), where)
        for key in ("anyOf", "oneOf"):
            if isinstance(node.get(key), list) and node[key]:
                rest = {k: v for k, v in node.items() if k != key}
                branches = sorted(node[key], key=lambda b: not self.reaches(b))
                for branch in branches:
                    saved = self._location
                    try:
                        found = self.value(branch, where) if not _constraining(rest) \
                            else self._plain(_merge(branch, rest), where, branch)
                    except NoInstance:
                        self._location = saved
                        continue
                    if self.ok(node, found):
                        return found
                    self._location = saved  # an abandoned attempt places nothing
                raise NoInstance(f"no branch of {key} gave a valid document")
        return self._plain(node, where)

    def _plain(self, node: dict[str, Any], where: list[Any], origin: Any = None) -> Any:
        """A node without anyOf/oneOf at its top: allOf merged, if/then/else tried."""
        if origin is not None and origin is self._focus and self._location is None:
            self._location = list(where)
        if isinstance(node.get("allOf"), list):
            merged = {k: v for k, v in node.items() if k != "allOf"}
            for part in node["allOf"]:
                if part is self._focus and self._location is None:
                    self._location = list(where)
                if isinstance(part, dict):
                    part = self.resolve(part["$ref"]) if set(part) == {"$ref"} else part
                    merged = _merge(merged, part)
            return self.value(merged, where) if "allOf" not in merged else None
        if "if" in node:
            base = {k: v for k, v in node.items() if k not in ("if", "then", "else")}
            tries = [base]
            for key in ("then", "else"):
                if isinstance(node.get(key), dict):
                    merged = _merge(base, node[key])
                    if key == "then" and isinstance(node["if"], dict):
                        merged = _merge(merged, node["if"])
                    tries.insert(0 if self.reaches(node[key]) else len(tries), merged)
            for key in ("then", "else"):
                if node.get(key) is self._focus and self._location is None:
                    self._location = list(where)
            found = self._first_valid(node, (lambda a=a: self._typed(a, where) for a in tries))
            if found is _NONE:
                raise NoInstance("no document satisfied if/then/else")
            return found
        return self._typed(node, where)

    def _first_valid(self, node: dict[str, Any], attempts: Any) -> Any:
        """The first attempt's document that `node` accepts, or _NONE; an attempt that
        fails leaves the focus location as it was."""
        for attempt in attempts:
            saved = self._location
            try:
                found = attempt()
            except NoInstance:
                self._location = saved
                continue
            if self.ok(node, found):
                return found
            self._location = saved
        return _NONE

    def _typed(self, node: dict[str, Any], where: list[Any]) -> Any:
        kinds = node.get("type")
        if isinstance(kinds, list) and len(kinds) > 1:
            # Several types: the one whose keywords lead to the focus first, then in order.
            leads = {"array": ("items", "prefixItems", "contains"),
                     "object": ("properties", "additionalProperties", "patternProperties")}
            order = sorted(kinds, key=lambda k: not any(
                self.reaches(node.get(key)) for key in leads.get(k, ())))
            found = self._first_valid(
                node, (lambda k=k: self._of_type(node, k, where) for k in order))
            if found is not _NONE:
                return found
        found = self._of_type(node, _pick_type(node), where)
        if "not" in node and not self.ok(node, found):
            for other in (1, "a", True, None, [], {}, 2, "b"):
                if self.ok(node, other):
                    return other
        return found

    def _of_type(self, node: dict[str, Any], kind: str, where: list[Any]) -> Any:
        if kind == "object":
            return self._object(node, where)
        if kind == "array":
            return self._array(node, where)
        if kind == "string":
            return _string(node)
        if kind in ("integer", "number"):
            return _number(node, kind == "integer")
        if kind == "boolean":
            return False
        return None

    def _object(self, node: dict[str, Any], where: list[Any]) -> dict[str, Any]:
        properties = node.get("properties") if isinstance(node.get("properties"), dict) else {}
        required = [r for r in node.get("required", []) if isinstance(r, str)]
        out: dict[str, Any] = {}
        for name, sub in properties.items():
            if name in required or self.reaches(sub):
                out[name] = self.value(sub, [*where, name])
        extra = node.get("additionalProperties", True)
        for name in required:
            if name not in out:
                sub = extra if isinstance(extra, dict) else True
                out[name] = self.value(sub, [*where, name])
        for name, sub in (node.get("patternProperties") or {}).items():
            if self.reaches(sub) and isinstance(name, str):
                key = string_for(name) or "a"
                out[key] = self.value(sub, [*where, key])
        if isinstance(extra, dict) and self.reaches(extra):
            out["extra"] = self.value(extra, [*where, "extra"])
        for trigger, needs in (node.get("dependentRequired") or {}).items():
            if trigger in out:
                for name in needs:
                    out.setdefault(name, self.value(properties.get(name, True),
                                                    [*where, name]))
        for name, sub in properties.items():  # minProperties: optional ones, in order
            if len(out) >= int(node.get("minProperties", 0)):
                break
            if name not in out:
                out[name] = self.value(sub, [*where, name])
        return out

    def _array(self, node: dict[str, Any], where: list[Any]) -> list[Any]:
        prefix = node.get("prefixItems")
        items = node.get("items", True)
        if isinstance(items, list):  # draft 4-7 tuple form
            prefix, items = items, node.get("additionalItems", True)
        out: list[Any] = []
        for index, sub in enumerate(prefix or []):
            out.append(self.value(sub, [*where, index]))
        wanted = int(node.get("minItems", 0))
        if self.reaches(items) or self.reaches(node.get("contains")):
            wanted = max(wanted, len(out) + 1)
        if isinstance(node.get("contains"), dict | bool):
            out.append(self.value(node["contains"], [*where, len(out)]))
        while len(out) < wanted:
            value = self.value(items, [*where, len(out)])
            if node.get("uniqueItems") and value in out:
                value = _vary(value, len(out))
            out.append(value)
        return out


def _constraining(node: dict[str, Any]) -> bool:
    return any(key not in ANNOTATIONS for key in node)


ANNOTATIONS = frozenset({"title", "description", "$comment", "examples", "default", "$schema",
                         "$id", "id", "$anchor", "$dynamicAnchor", "deprecated", "readOnly",
                         "writeOnly", "$defs", "definitions", "$vocabulary",
                         "contentMediaType", "contentEncoding", "contentSchema"})


def _merge(a: dict[str, Any], b: dict[str, Any] | bool) -> dict[str, Any]:
    if not isinstance(b, dict):
        return dict(a)
    merged = dict(a)
    for key, value in b.items():
        if key == "properties" and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        elif key == "required" and isinstance(merged.get(key), list):
            merged[key] = list(dict.fromkeys([*merged[key], *value]))
        elif key not in merged:
            merged[key] = value
    return merged


def _pick_type(node: dict[str, Any]) -> str:
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if isinstance(kind, str):
        return kind
    keys = set(node)
    if keys & {"properties", "required", "additionalProperties", "patternProperties",
               "minProperties", "maxProperties", "propertyNames", "dependentRequired"}:
        return "object"
    if keys & {"items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains"}:
        return "array"
    if keys & {"minLength", "maxLength", "pattern", "format"}:
        return "string"
    if keys & {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}:
        return "number"
    return "null"


def _string(node: dict[str, Any]) -> str:
    if isinstance(node.get("format"), str) and node["format"] in FORMAT_EXAMPLES:
        text = FORMAT_EXAMPLES[node["format"]]
    elif isinstance(node.get("pattern"), str):
        text = string_for(node["pattern"])
    else:
        text = ""
    low = int(node.get("minLength", 0))
    if len(text) < low:
        text += (text[-1:] or "a") * (low - len(text))
    return text


def _number(node: dict[str, Any], integer: bool) -> int | float:
    low, high = node.get("minimum"), node.get("maximum")
    if isinstance(node.get("exclusiveMinimum"), int | float) and not isinstance(
            node.get("exclusiveMinimum"), bool):
        low = node["exclusiveMinimum"] + (1 if integer else 0.5)
    if isinstance(node.get("exclusiveMaximum"), int | float) and not isinstance(
            node.get("exclusiveMaximum"), bool):
        high = node["exclusiveMaximum"] - (1 if integer else 0.5)
    value: float = 0
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    step = node.get("multipleOf")
    if isinstance(step, int | float) and step > 0:
        value = math.ceil(value / step) * step
    if integer:
        return int(math.ceil(value))
    return int(value) if float(value).is_integer() else value


def _vary(value: Any, index: int) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + index
    if isinstance(value, str):
        return value + str(index)
    return value
