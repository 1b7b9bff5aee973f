"""Test strings before a run: the user's lines with what they expect, each judged by the
validator and by every backend's matcher, and the table row the page and CLI show.

(A module of the package, not a pytest file: pytest collects only under tests/.)
"""

from __future__ import annotations

from typing import Any

from playground.backends.names import MATCHER_BACKENDS
from playground.core.constraints import Constraint
from playground.errors import ConstraintError

Case = tuple[str, bool | None]  # (text, should it match; None: no expectation)


def parse_cases(text: str) -> list[Case]:
    """Lines `+ text` (should match), `- text` (should not) or plain (no expectation).
    `\\n` and `\\t` in a line stand for a newline and a tab."""
    cases: list[Case] = []
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


def test_strings(constraint: Constraint, cases: list[Case],
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
        try:
            errors = errors_in(constraint, text)
            matches: bool | None = not errors
        except RecursionError:  # Python's JSON reader and jsonschema recurse per level
            errors, matches = ["not judged: nested too deeply for the validator"], None
        row: dict[str, Any] = {"text": text, "expect": expect,
                               "validator": {"matches": matches, "errors": errors[:3]},
                               "backends": {}}
        for backend in backends:
            if backend in refused:
                row["backends"][backend] = {"matches": None, "message": refused[backend]}
                continue
            row["backends"][backend] = matchers[backend].test(text).as_dict()
        verdicts = {"validator": matches} | {
            b: v["matches"] for b, v in row["backends"].items()}
        known = {verdict for verdict in verdicts.values() if verdict is not None}
        row["disagree"] = len(known) > 1
        row["unexpected"] = None not in (expect, matches) and expect != matches
        results.append(row)
    return results


def test_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """One table row per string: string | expected | validator | each backend | flag."""
    rows = []
    for result in results:
        cells = [repr(result["text"])[1:-1],
                 {True: "should match", False: "should not match", None: "–"}[result["expect"]],
                 _word(result["validator"]["matches"],
                       "; ".join(result["validator"]["errors"][:1]))
                 if result["validator"]["matches"] is not None
                 else result["validator"]["errors"][0]]
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
