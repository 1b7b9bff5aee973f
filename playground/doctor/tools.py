"""The constraint doctor: what an engine's backend receives, test strings before a run,
the lenient ("generate anyway") constraint, and where a regex dialect reads differently.

Plain functions over constraints and the backends' CPU compilers and matchers; the UI, the
API, the CLI and the service call them. Per-keyword coverage of a JSON Schema lives in
`playground.doctor.coverage`.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from playground.backends.names import MATCHER_BACKENDS
from playground.core.constraints import Constraint, JsonSchema, LarkGrammar, Regex
from playground.errors import ConstraintError


def engine_backend(engine: Any) -> str:
    """The coverage column of an engine: "xgrammar" for the CPU engine (xgrammar without
    vLLM's checks), "vllm:<backend>" for vLLM in-process or a vLLM server."""
    backend = getattr(engine, "backend", None) or engine.info.options.get("backend")
    if not isinstance(backend, str):
        return "xgrammar"
    backend = backend.split()[0]
    return f"vllm:{'xgrammar' if backend == 'auto' else backend}"


# ---- what was sent -----------------------------------------------------------------------


def sent(constraint: Constraint, backend: str = "xgrammar",
         any_whitespace: bool = True) -> dict[str, str]:
    """The constraint exactly as `backend` receives it: {"backend", "language", "text"}.

    xgrammar (the CPU engine): the EBNF xgrammar builds from it. vLLM: the field of
    StructuredOutputsParams, converted as vLLM is sent it (a Lark grammar as EBNF for
    xgrammar, as Lark without `?rule` for guidance); the schema as JSON.
    """
    if backend == "xgrammar":
        from playground.backends.xgrammar import to_grammar

        try:
            text = str(to_grammar(constraint, any_whitespace))
        except ConstraintError as exc:
            text = f"# xgrammar refuses it: {exc}"
        return {"backend": backend, "language": "ebnf", "text": text}
    from playground.backends.vllm import structured_outputs_kwargs

    raw = backend.removeprefix("vllm:")
    try:
        fields = structured_outputs_kwargs(constraint, raw)
    except ConstraintError as exc:
        return {"backend": backend, "language": "text", "text": f"# not convertible: {exc}"}
    key, value = next(iter(fields.items()))
    if key == "json":
        return {"backend": backend, "language": "json", "text": json.dumps(value, indent=2)}
    if key == "choice":
        return {"backend": backend, "language": "json", "text": json.dumps(value, indent=2)}
    language = {"regex": "regex", "grammar": "lark" if raw == "guidance" else "ebnf"}[key]
    return {"backend": backend, "language": language, "text": value}


# ---- lenient -----------------------------------------------------------------------------


@dataclass
class Lenient:
    """The constraint a lenient run sends, and what of the full one it gives up."""

    constraint: Constraint
    backend: str
    not_enforced: list[str] = field(default_factory=list)  # "keyword at path"
    sites: set[tuple[str, str]] = field(default_factory=set)  # (path, keyword)
    how: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "how": self.how, "not_enforced": self.not_enforced,
                "schema": self.constraint.schema if isinstance(self.constraint, JsonSchema)
                else None}


def lenient(constraint: Constraint, backend: str, time_limit_s: float = 20.0) -> Lenient:
    """For a JSON Schema: the schema `backend` can take, and the keywords it will not
    enforce (rejected, then dropped or ignored; or accepted and let through). Other
    modes have no keywords: the constraint itself."""
    if not isinstance(constraint, JsonSchema) or not isinstance(constraint.schema, dict):
        return Lenient(constraint, backend, how="nothing to relax in this mode")
    from playground.doctor.coverage import coverage, lenient_schema

    table = coverage(constraint.schema, [backend], time_limit_s)
    rows = [r for r in table.rows if r.backends.get(backend) in ("rejected", "not enforced")]
    schema = lenient_schema(constraint.schema, backend, table)
    how = ("llguidance's lenient mode (x-guidance: {\"lenient\": true}): unsupported keywords "
           "and formats are ignored" if backend.endswith("guidance")
           else "the keywords the backend rejects are removed")
    if table.refusals.get(backend) is None:
        how = "the backend takes the schema as it is"
    return Lenient(JsonSchema(schema), backend,
                   [f"{r.keyword} at {r.path}" for r in rows],
                   {(r.path, r.keyword) for r in rows}, how)


@functools.lru_cache(maxsize=32)  # the page asks again at every keystroke in the prompt
def bounded_lenient(constraint: Constraint, backend: str, limit_s: float,
                    view: bool = False) -> Lenient:
    """`lenient` in a worker process killed past `limit_s` and a margin (a compiler given
    a huge schema may not return for minutes): TimeoutError then. `view`: for a doctor's
    view, not a run, so it takes no more than the tools' share of the workers."""
    from functools import partial

    from playground.doctor.coverage import warm
    from playground.judging import workers as bounded

    call = bounded.side_call if view else bounded.call
    try:
        return call(lenient, constraint, backend, limit_s, timeout=limit_s + 15,
                    setup=partial(warm, [backend]))
    except bounded.WorkerDied as exc:
        raise TimeoutError(str(exc)) from None


def mark_not_enforced(constraint: Constraint, text: str, errors: list[str],
                      relaxed: Lenient) -> tuple[list[str], bool]:
    """The verdict's errors, each one that breaks a keyword the run did not enforce saying
    so; and whether every schema error is such a one (the output is JSON breaking only
    keywords this lenient run left unenforced on purpose: expected, not an escape)."""
    if not relaxed.sites or not isinstance(constraint, JsonSchema):
        return errors, False
    from playground.core.schema import schema_validator
    from playground.doctor.coverage import json_path

    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return errors, False
    flagged, others = set(), 0
    for error in schema_validator(constraint.schema).iter_errors(document):
        where = list(error.absolute_schema_path)
        if where and (json_path(tuple(where[:-1])), str(where[-1])) in relaxed.sites:
            flagged.add(f"{error.json_path}: {error.message}")
        else:
            others += 1
    marked = [f"{e} (not enforced by {relaxed.backend} in this lenient run)" if e in flagged
              else e for e in errors]
    return marked, others == 0


# ---- test strings ------------------------------------------------------------------------


def parse_cases(text: str) -> list[tuple[str, bool | None]]:
    """Lines `+ text` (should match), `- text` (should not) or plain (no expectation).
    `\\n` and `\\t` in a line stand for a newline and a tab."""
    cases: list[tuple[str, bool | None]] = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        expect: bool | None = None
        if line[:2] in ("+ ", "- "):
            expect, line = line[0] == "+", line[2:]
        elif line in ("+", "-"):
            expect, line = line == "+", ""
        cases.append((line.replace("\\n", "\n").replace("\\t", "\t"), expect))
    return cases


def test_strings(constraint: Constraint, cases: list[tuple[str, bool | None]],
                 backends: tuple[str, ...] = MATCHER_BACKENDS) -> list[dict[str, Any]]:
    """For each string: the validator's verdict, each backend matcher's (with the first
    refused character and what was expected there), and the disagreements."""
    from playground.judging.matcher import Matcher
    from playground.judging.validation import errors_in

    matchers: dict[str, Any] = {}
    refused: dict[str, str] = {}
    for backend in backends:
        try:
            matchers[backend] = Matcher.create(constraint, None, backend)  # type: ignore[arg-type]
        except ConstraintError as exc:
            refused[backend] = str(exc)
    results = []
    for text, expect in cases:
        errors = errors_in(constraint, text)
        row: dict[str, Any] = {"text": text, "expect": expect,
                               "validator": {"matches": not errors, "errors": errors[:3]},
                               "backends": {}}
        for backend in backends:
            if backend in refused:
                row["backends"][backend] = {"matches": None, "message": refused[backend]}
                continue
            row["backends"][backend] = matchers[backend].test(text).as_dict()
        verdicts = {"validator": not errors} | {
            b: v["matches"] for b, v in row["backends"].items() if v["matches"] is not None}
        row["disagree"] = len(set(verdicts.values())) > 1
        row["unexpected"] = expect is not None and expect != (not errors)
        results.append(row)
    return results


def test_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """One table row per string: string | expected | validator | each backend | flag."""
    rows = []
    for result in results:
        cells = [repr(result["text"])[1:-1],
                 {True: "should match", False: "should not match", None: "–"}[result["expect"]],
                 _word(result["validator"]["matches"],
                       "; ".join(result["validator"]["errors"][:1]))]
        for found in result["backends"].values():
            if found["matches"] is None:
                cells.append(f"refuses the constraint: {found['message']}")
            elif found["matches"]:
                cells.append("matches")
            else:
                cells.append(_word(False, found.get("message") or ""))
        flags = []
        if result["unexpected"]:
            flags.append("⚠ not as expected")
        if result["disagree"]:
            flags.append("⚠ validator and engine disagree")
        rows.append(cells + [", ".join(flags) or "ok"])
    return rows


def _word(matches: bool, why: str) -> str:
    return "matches" if matches else f"no match: {why}" if why else "no match"


# ---- dialect -----------------------------------------------------------------------------

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
    """`dialect_lines(dialect_notes(...))` in a worker process killed past `limit_s`:
    probing a pattern with lookarounds runs Python `re`, which a user's pattern can make
    backtrack for hours while holding the GIL (the server's event loop with it)."""
    from functools import partial

    from playground.doctor.coverage import warm
    from playground.judging import workers as bounded

    try:
        notes = bounded.side_call(dialect_notes, constraint, timeout=limit_s,
                                  setup=partial(warm, []))
    except (bounded.WorkTimeout, bounded.WorkerDied) as exc:
        return [f"the dialect check gave up: {exc}"]
    return dialect_lines(notes)


def dialect_notes(constraint: Constraint) -> list[dict[str, Any]]:
    """Dialect differences of a regex, or of every `pattern` in a JSON Schema."""
    if isinstance(constraint, Regex):
        return dialect(constraint.pattern)
    if isinstance(constraint, JsonSchema):
        from playground.doctor.coverage import sites

        notes = []
        for site in sites(constraint.schema):
            if site.keyword in ("pattern", "patternProperties"):
                from playground.doctor.coverage import node_at

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
        where = f"{note['where']} " if note["where"] else ""
        says = "; ".join(f"{b} {v}" for b, v in note["backends"].items())
        if "probe" in note:
            lines.append(f"{where}position {note['position']}: {note['feature']} on "
                         f"{note['probe']!r}: the validator {note['validator']}; {says}")
        elif note["where"].startswith("line "):
            lines.append(f"{note['where']}: {note['feature']}: {says}")
        else:
            lines.append(f"{where}position {note['position']}: {note['feature']}: the "
                         f"validator uses {note['validator']}; {says}")
    return lines
