"""Where a regex dialect reads differently: each engine's matcher and the validator (RE2,
then Python `re`) are asked about the features and character classes found in a pattern
(a bare regex, or each `pattern` of a JSON Schema), and about a Lark grammar's features;
only the differences found are reported.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from typing import Any

from playground.backends.names import MATCHER_BACKENDS
from playground.core.constraints import Constraint, JsonSchema, LarkGrammar, Regex
from playground.errors import ConstraintError, WorkerDied, WorkTimeout

# (what to find in a pattern, a one-character regex of that class, characters it might
# match in one dialect and not another). Each is tried through every backend's matcher and
# through the validator; only the differences found are reported.
_CLASS_PROBES: list[tuple[str, str, list[str]]] = [
    (r"\\d", r"\d", ["٣", "５"]),
    (r"\\w", r"\w", ["é", "ж"]),
    (r"\\s", r"\s", ["\u00a0", "\u2003"]),
    (r"(?<!\\)\.", r".", ["\n", "é"]),
    (r"\\b", r"a\b", []),
]
_FEATURES: list[tuple[str, str]] = [
    (r"\(\?[=!]", "lookahead"), (r"\(\?<[=!]", "lookbehind"),
    (r"\\[1-9]|\(\?P=", "backreference"), (r"\\b|\\B", "word boundary"),
    (r"\(\?[aiLmsux]+\)", "inline flag"), (r"\(\?>|[*+?}]\+", "atomic/possessive"),
]


def _feature_verdict(pattern: str, backend: str, in_schema: bool) -> str:
    """What `backend` makes of a pattern with a feature the engines lack: refused, or
    compiled and then (asked with a string that breaks only that feature) ignored."""
    from playground.doctor.instances import string_for
    from playground.judging.matcher import Matcher

    constraint: Constraint = JsonSchema({"type": "string", "pattern": pattern}) \
        if in_schema else Regex(pattern)
    try:
        matcher = Matcher.create(constraint, None, backend)  # type: ignore[arg-type]
    except ConstraintError as exc:
        return f"refuses it: {exc}"
    for probe in dict.fromkeys([string_for(pattern, last=True), string_for(pattern)]):
        try:  # as the validator judges: a schema's pattern searched, a regex matched whole
            breaks = (re.search if in_schema else re.fullmatch)(pattern, probe) is None
        except re.error:
            break
        text = json.dumps(probe) if in_schema else probe
        if breaks and matcher.accepts(text):
            return f"accepts the pattern but ignores this: it lets {probe!r} through"
    return "accepts the pattern"


def dialect(pattern: str, where: str = "",
            backends: tuple[str, ...] = MATCHER_BACKENDS,
            in_schema: bool = False) -> list[dict[str, Any]]:
    """Where the engines read `pattern` differently from the validator (RE2, then Python
    `re`), found by asking them: each feature's position, and what each side says
    (`in_schema`: of the pattern as a JSON Schema `pattern`, which xgrammar treats
    differently from a bare regex)."""
    from playground.judging.matcher import Matcher
    from playground.judging.validation import errors_in

    notes: list[dict[str, Any]] = []
    for find, name in _FEATURES:
        for found in re.finditer(find, pattern):
            says = {backend: _feature_verdict(pattern, backend, in_schema)
                    for backend in backends}
            notes.append({"where": where, "position": found.start(), "feature": name,
                          "validator": "Python re (RE2 refuses it)",
                          "backends": says})
    for find, probe, chars in _CLASS_PROBES:
        positions = [m.start() for m in re.finditer(find, pattern)]
        if not positions or not chars:
            continue
        for char in chars:
            validator = not errors_in(Regex(probe), char)
            says = {}
            for backend in backends:
                try:
                    matcher = Matcher.create(Regex(probe), None, backend)  # type: ignore[arg-type]
                    says[backend] = matcher.accepts(char)
                except ConstraintError:
                    continue
            if any(v != validator for v in says.values()):
                notes.append({
                    "where": where, "position": positions[0], "feature": probe,
                    "probe": char,
                    "validator": "matches" if validator else "does not match",
                    "backends": {b: "matches" if v else "does not match"
                                 for b, v in says.items()}})
    return notes


def bounded_dialect_lines(constraint: Constraint, limit_s: float) -> list[str]:
    """`dialect_lines(dialect_notes(...))` in a worker process killed past `limit_s`."""
    return dialect_lines(bounded_dialect_notes(constraint, limit_s))


def bounded_dialect_notes(constraint: Constraint, limit_s: float) -> list[dict[str, Any]]:
    """`dialect_notes` in a worker process killed past `limit_s`: probing a pattern with
    lookarounds runs Python `re`, which a user's pattern can make backtrack for hours while
    holding the GIL (the server's event loop with it). Giving up is a note of its own."""
    from playground.doctor.testers import warm
    from playground.judging import workers

    try:
        return workers.side_call(dialect_notes, constraint, timeout=limit_s,
                                 setup=functools.partial(warm, []))
    except (WorkTimeout, WorkerDied) as exc:
        return [{"where": "", "gave_up": str(exc), "backends": {}}]


def affects(note: dict[str, Any], backend: str) -> bool:
    """Whether `backend` reads the note's spot differently from the validator: it refuses
    or ignores the feature, or a probe's answer differs. A backend the note did not ask
    (and a check that gave up) cannot be cleared, so the note stands for it."""
    says = note["backends"].get(backend)
    if says is None:
        return True
    if "probe" in note:
        return says != note["validator"]
    return says not in ("accepts the pattern", "accepts the grammar")


def dialect_notes(constraint: Constraint) -> list[dict[str, Any]]:
    """Dialect differences of a regex, or of every `pattern` in a JSON Schema."""
    if isinstance(constraint, Regex):
        return dialect(constraint.pattern)
    if isinstance(constraint, JsonSchema):
        from playground.doctor.sites import node_at, sites

        notes = []
        for site in sites(constraint.schema):
            if site.keyword in ("pattern", "patternProperties"):
                value = node_at(constraint.schema, site.path)[site.keyword]
                for pattern in [value] if isinstance(value, str) else list(value):
                    notes += dialect(pattern, f"{site.json_path}.{site.keyword}",
                                     in_schema=True)
        return notes
    if isinstance(constraint, LarkGrammar):
        return grammar_notes(constraint)
    return []


# Lark features whose fate in the engines' converters is worth a line: each is looked up in
# the grammar and the whole grammar is compiled by each backend to see what it says.
_LARK_FEATURES: list[tuple[str, str]] = [
    (r"(?m)^\s*%ignore\b", "%ignore"), (r"(?m)^\s*%declare\b", "%declare"),
    (r"(?m)^\s*%(override|extend)\b", "%override/%extend"),
    (r"(?m)^\s*[A-Z_][A-Z_0-9]*\.-?\d+\s*:", "terminal priority"),
    (r"(?m)^\s*[a-z_][a-z_0-9]*\.-?\d+\s*:", "rule priority"),
    (r"(?m)^\s*\?[a-z_]", "?rule (inlined)"), (r"/[a-z]*[imsx][a-z]*(?=\s|$)", "regex flags"),
    (r"[a-z_]\{", "template"),
]


def grammar_notes(constraint: LarkGrammar,
                  backends: tuple[str, ...] = MATCHER_BACKENDS) -> list[dict[str, Any]]:
    """Lark features of the grammar, each at its line, with what each backend makes of the
    grammar (vLLM's guidance gets `?rule:` without its `?`, which only shapes Lark's tree)."""
    from playground.judging.matcher import Matcher

    found = [(name, constraint.grammar.count("\n", 0, m.start()) + 1)
             for pattern, name in _LARK_FEATURES
             for m in re.finditer(pattern, constraint.grammar)]
    if not found:
        return []
    says = {}
    for backend in backends:
        try:
            Matcher.create(constraint, None, backend)  # type: ignore[arg-type]
            says[backend] = "accepts the grammar"
        except ConstraintError as exc:
            says[backend] = f"refuses it: {exc}"
    return [{"where": f"line {line}", "position": line, "feature": name,
             "validator": "lark (Earley)", "backends": says} for name, line in found]


def dialect_lines(notes: list[dict[str, Any]]) -> list[str]:
    """Each note as one line of text."""
    lines = []
    for note in notes:
        if "gave_up" in note:
            lines.append(f"the dialect check gave up: {note['gave_up']}")
            continue
        where = f"{note['where']} " if note["where"] else ""
        says = "; ".join(f"{b} {v}" for b, v in note["backends"].items())
        if "probe" in note:
            lines.append(f"{where}position {note['position']}: {note['feature']} on "
                         f"{note['probe']!r} ({_codepoint(note['probe'])}): the validator "
                         f"{note['validator']}; {says}")
        elif note["where"].startswith("line "):
            lines.append(f"{note['where']}: {note['feature']}: {says}")
        else:
            lines.append(f"{where}position {note['position']}: {note['feature']}: the "
                         f"validator uses {note['validator']}; {says}")
    return lines


def _codepoint(char: str) -> str:
    """A probe's code point and name: a font without the glyph draws a box."""
    name = unicodedata.name(char, "").lower() or "control character"
    return f"U+{ord(char):04X} {name}"
