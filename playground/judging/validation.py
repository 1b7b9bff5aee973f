"""Judges generated text against a constraint: the one place a verdict is decided.

The verdict is independent of how the text was produced, so the same function judges
constrained and unconstrained output, and any engine's. Imports no engine and no model;
a cut output's prefix is checked with the backends' CPU matchers (playground.judging.matcher).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from playground.backends.names import DEFAULT_BACKEND, MATCHER_BACKENDS
from playground.core.constraints import Constraint, JsonSchema
from playground.core.text_check import errors_in
from playground.errors import ConstraintError

# unjudged: validation ran past its time limit (playground.judging.judge); the errors say why.
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
    tried: list[str] = []
    # The engine's backend first; the other where it cannot compile the constraint.
    first = backend if backend in MATCHER_BACKENDS else DEFAULT_BACKEND
    for name in dict.fromkeys([first, *MATCHER_BACKENDS]):
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
    from playground.judging.matcher import Matcher

    return Matcher.create(constraint, None, backend, any_whitespace)  # type: ignore[arg-type]
