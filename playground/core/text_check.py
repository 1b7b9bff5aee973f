"""What in a text breaks a constraint: the pure check under every verdict.

No matcher and no engine: the regex by RE2 in linear time (Python `re` only for what RE2
refuses, which playground.judging.judge runs in a worker under a time limit), JSON by the
schema's validator, a grammar by its Earley parser.
"""

from __future__ import annotations

import re

from playground.core import linear_re
from playground.core.constraints import (
    Choice,
    Constraint,
    JsonSchema,
    LarkGrammar,
    Regex,
    ToolCalls,
)
from playground.core.lark_check import grammar_errors, lark_parser
from playground.core.schema import json_errors
from playground.core.tools import call_errors


def errors_in(constraint: Constraint, text: str) -> list[str]:
    match constraint:
        case Choice(choices=choices):
            if text in choices:
                return []
            return [f"{_short(text)} is not one of the {len(choices)} choices"]
        case Regex(pattern=pattern):
            # RE2 in linear time; Python `re` only for what RE2 refuses (backreferences,
            # lookarounds), which playground.judging.judge runs in a worker under a time limit.
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
        case ToolCalls():
            return call_errors(constraint, text)
    raise TypeError(f"not a constraint: {constraint!r}")


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
