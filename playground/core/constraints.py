"""The five constraint kinds: parsed and checked here, knowing nothing of any engine.

Each constraint is built from what a user typed in an editor (`from_text`) or from
structured values (named constructors), and raises `ConstraintError` with a position
when it cannot be used. Engines only ever receive these objects.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from playground.core.lark_check import lark_parser
from playground.core.schema import check_schema, json_objects, parse_json
from playground.core.tools import ToolSet
from playground.errors import ConstraintError

Mode = Literal["choice", "regex", "json", "grammar", "tool"]
MODES: tuple[Mode, ...] = ("choice", "regex", "json", "grammar", "tool")
MODE_LABELS: dict[Mode, str] = {
    "choice": "Choice",
    "regex": "Regex",
    "json": "JSON Schema",
    "grammar": "Lark grammar",
    "tool": "Tool call",
}


@dataclass(frozen=True)
class Choice:
    choices: tuple[str, ...]
    mode: Mode = field(default="choice", init=False)

    @classmethod
    def from_text(cls, text: str) -> Choice:
        """One choice per line; blank lines are skipped, other whitespace is kept."""
        return cls.from_list([line for line in text.splitlines() if line.strip()])

    @classmethod
    def from_list(cls, choices: list[str]) -> Choice:
        if not choices:
            raise ConstraintError("choice: give at least one choice (one per line)")
        seen: set[str] = set()
        for number, choice in enumerate(choices, start=1):
            if choice in seen:
                raise ConstraintError(f"choice: line {number}: {choice!r} is listed twice")
            control = _CONTROL.search(choice)
            if control:  # engines' grammar front ends reject or mangle them
                raise ConstraintError(
                    f"choice: line {number}: {choice[:60]!r} holds the control character "
                    f"U+{ord(control.group()):04X}; choices are plain text (tabs allowed)")
            seen.add(choice)
        return cls(tuple(choices))

    @property
    def warnings(self) -> list[str]:
        return []

    def to_text(self) -> str:
        return "\n".join(self.choices)


# Python `re` features that xgrammar's and vLLM's regex front ends (ECMAScript-like,
# compiled to an automaton) do not support or read differently.
_DIALECT_HINTS: list[tuple[str, str]] = [
    (r"\(\?[=!<]", "lookaround assertions are not supported by the engine's regex dialect"),
    (r"\\[1-9]|\(\?P=", "backreferences are not supported by the engine's regex dialect"),
    (r"\(\?[aiLmsux]+[):]", "inline flags are not supported by the engine's regex dialect"),
    (r"\\[bB]", r"word boundaries (\b, \B) are not supported by the engine's regex dialect"),
    (r"\\[AZz]", r"anchors \A, \Z, \z are not supported by the engine's regex dialect"),
    (r"\(\?P<", "named groups (?P<name>...) are Python syntax; the engine may reject them"),
    (r"\(\?>|[*+?}]\+", "atomic groups and possessive quantifiers are not supported"),
]
_SLOW_REPEAT = re.compile(r"\{(\d*),(\d+)\}")
_SLOW_SPAN = 64
_SLOW_MEASURED = ("measured: [a-z ]{1,400} at 352 tok/s with xgrammar and 1,379 with guidance "
                  "against ~15,000 free at 128 concurrent requests on an H100")


def slow_repetitions(pattern: str, where: str = "") -> list[str]:
    """Warnings for bounded repetitions wide enough to make decoding slow."""
    return [
        f"slow: bounded repetition {{{low},{high}}}{where} builds a large automaton and "
        f"decodes far slower under load ({_SLOW_MEASURED}); write `*` or `+` and limit the "
        "length with max tokens instead"
        for low, high in _SLOW_REPEAT.findall(pattern) if int(high) - int(low or 0) >= _SLOW_SPAN
    ]


@dataclass(frozen=True)
class Regex:
    pattern: str
    mode: Mode = field(default="regex", init=False)

    @classmethod
    def from_text(cls, text: str) -> Regex:
        if text == "":
            raise ConstraintError("regex: the pattern is empty")
        try:
            re.compile(text)
        except re.error as exc:
            where = f"position {exc.pos}" if exc.pos is not None else "unknown position"
            raise ConstraintError(f"regex: {exc.msg} at {where}: {_caret(text, exc.pos)}") from None
        return cls(text)

    @cached_property
    def warnings(self) -> list[str]:
        found = [hint for pattern, hint in _DIALECT_HINTS if re.search(pattern, self.pattern)]
        if "^" in self.pattern.lstrip("^") or "$" in self.pattern.rstrip("$"):
            found.append("^ and $ inside the pattern: validation uses a full match, so anchors "
                         "are implied")
        return found + slow_repetitions(self.pattern)

    def to_text(self) -> str:
        return self.pattern


@dataclass(frozen=True)
class JsonSchema:
    schema: dict[str, Any] | bool
    mode: Mode = field(default="json", init=False)

    @classmethod
    def from_text(cls, text: str) -> JsonSchema:
        if not text.strip():
            raise ConstraintError("json: the schema is empty")
        return cls.from_schema(parse_json(text, "json"))

    @classmethod
    def from_schema(cls, schema: Any) -> JsonSchema:
        if not isinstance(schema, dict | bool):
            raise ConstraintError("json: a schema must be a JSON object (or true/false)")
        check_schema(schema)
        return cls(schema)

    @cached_property
    def text(self) -> str:
        return json.dumps(self.schema)

    @cached_property
    def warnings(self) -> list[str]:
        found: list[str] = []
        for path, node in json_objects(self.schema, "$"):
            if isinstance(node.get("pattern"), str):
                found += slow_repetitions(node["pattern"], f" in the pattern at {path}")
                # Inside a schema xgrammar compiles such a pattern and drops the feature
                # (a warning on its stderr only): say it before the run.
                found += [f"the pattern at {path}: {hint}; inside a JSON Schema the engine "
                          "may ignore it and let breaking strings through"
                          for find, hint in _DIALECT_HINTS if re.search(find, node["pattern"])]
            found += [f"{key} at {path}: {_digits(number)} is past 2**53; the grammar "
                      "backends read it as a float, so the engine writes a rounded number "
                      "that does not match" for key, number in _wide_integers(node)]
            for key in ("maxLength", "maxItems"):
                if isinstance(node.get(key), int) and node[key] - node.get(
                        key.replace("max", "min"), 0) >= _SLOW_SPAN:
                    found.append(
                        f"slow: {key} {node[key]} at {path} becomes a bounded repetition of "
                        f"{node[key]} in the grammar ({_SLOW_MEASURED} for the like regex); "
                        f"drop {key} and limit the length with max tokens instead")
        return found

    def to_text(self) -> str:
        return json.dumps(self.schema, indent=2)

    def __hash__(self) -> int:
        return hash(self.text)


# The largest integer a float (IEEE double, as the grammar compilers read JSON) holds exactly.
_EXACT_FLOAT_INT = 2**53


def _wide_integers(node: dict[str, Any]) -> list[tuple[str, int]]:
    """(keyword, integer) for each integer of this node's enum / const values past what a
    float holds, however deep inside a value (a loop: values may nest)."""
    found = []
    for key in ("enum", "const"):
        if key not in node:
            continue
        pending = [node[key]]
        while pending:
            value = pending.pop()
            if isinstance(value, int) and not isinstance(value, bool) \
                    and abs(value) > _EXACT_FLOAT_INT:
                found.append((key, value))
            elif isinstance(value, dict):
                pending += value.values()
            elif isinstance(value, list):
                pending += value
    return found[:3]


def _digits(number: int) -> str:
    text = str(number)
    return text if len(text) <= 24 else f"{text[:10]}…{text[-4:]} ({len(text)} digits)"


@dataclass(frozen=True)
class LarkGrammar:
    grammar: str
    start: str = "start"
    mode: Mode = field(default="grammar", init=False)

    @classmethod
    def from_text(cls, text: str, start: str = "start") -> LarkGrammar:
        if not text.strip():
            raise ConstraintError("grammar: the grammar is empty")
        _check_imports(text)
        lark_parser(text, start)
        return cls(text, start)

    @property
    def warnings(self) -> list[str]:
        return []

    def to_text(self) -> str:
        return self.grammar


@dataclass(frozen=True)
class ToolCalls(ToolSet):
    """Tools (OpenAI's format) and a tool choice: only the calls are constrained, each to
    its tool's parameters schema (core/tools.py: the call format and the call parser)."""

    mode: Mode = field(default="tool", init=False)

    @classmethod
    def from_text(cls, text: str) -> ToolCalls:
        return cls(*ToolSet.read(text))

    @cached_property
    def warnings(self) -> list[str]:
        found: list[str] = []
        for tool in self.tools:
            if isinstance(tool.parameters, dict) and tool.parameters.get("type") != "object":
                found.append(f"{tool.name}: the parameters schema is not of type object; "
                             "models and OpenAI expect arguments as an object")
            found += [f"{tool.name}: {warning}"
                      for warning in JsonSchema(tool.parameters).warnings]
        return found

    def __hash__(self) -> int:
        return hash(self.text)


Constraint = Choice | Regex | JsonSchema | LarkGrammar | ToolCalls

_FROM_TEXT = {
    "choice": Choice.from_text,
    "regex": Regex.from_text,
    "json": JsonSchema.from_text,
    "grammar": LarkGrammar.from_text,
    "tool": ToolCalls.from_text,
}


def from_text(mode: str, text: str) -> Constraint:
    """Build the constraint of `mode` from what a user typed in its editor."""
    if mode not in _FROM_TEXT:
        raise ConstraintError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    return _FROM_TEXT[mode](text)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_IMPORT = re.compile(r"^[ \t]*%import[ \t]+([\w.]*)", re.MULTILINE)


def _check_imports(grammar: str) -> None:
    """Only lark's bundled `common` may be imported: any other %import would make lark
    read files of the server (relative to its working directory, lark's folder, ...)."""
    for match in _IMPORT.finditer(grammar):
        path = match.group(1)
        if path == "common" or (path.startswith("common.") and path.count(".") == 1):
            continue
        line = grammar.count("\n", 0, match.start()) + 1
        raise ConstraintError(
            f"grammar: line {line}: %import {path[:60] or '(nothing)'} is not allowed: only "
            "lark's bundled common rules may be imported (e.g. %import common.WS or "
            "%import common (INT, WORD)); write the other rules into the grammar")


def _caret(text: str, pos: int | None) -> str:
    if pos is None:
        return repr(text)
    return f"{text[:pos]!r} >>> {text[pos:]!r}"
