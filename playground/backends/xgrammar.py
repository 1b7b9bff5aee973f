"""Constraints as xgrammar receives them, shared by the engines, the matcher, the doctor
and copy as code.

Importing xgrammar imports torch, so it is imported inside the functions that compile
(`lark_to_ebnf`, `to_grammar`): the constraint checker, `check` and the page's editor can
use this module's pure helpers (`choice_ebnf`, `backend_message`) without it.
"""

from __future__ import annotations

import functools
import json
import re
from typing import TYPE_CHECKING, Any

from playground.core.constraints import (
    Choice,
    Constraint,
    JsonSchema,
    LarkGrammar,
    Regex,
    ToolCalls,
)
from playground.core.tools import CALL_SEPARATOR, TRIGGER, Tool
from playground.errors import ConstraintError

if TYPE_CHECKING:
    import xgrammar as xgr


def choice_ebnf(choices: tuple[str, ...]) -> str:
    """EBNF with one string literal per choice (vLLM's xgrammar backend does the same)."""
    def literal(text: str) -> str:
        escaped = (text.replace("\\", "\\\\").replace('"', '\\"')
                   .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
        return f'"{escaped}"'

    return "root ::= " + " | ".join(literal(choice) for choice in choices)


# Bounded in entries, and in memory by --max-constraint-chars per grammar.
@functools.lru_cache(maxsize=32)
def lark_to_ebnf(grammar: str) -> str:
    """xgrammar's Lark front end accepts `?rule:` and regex terminals that vLLM's rejects."""
    import xgrammar as xgr

    try:
        return str(xgr.Grammar.from_lark(grammar))
    except Exception as exc:  # xgrammar raises RuntimeError/ValueError with its reason
        raise ConstraintError(f"grammar: xgrammar cannot convert it: {_first_line(exc)}") from None


def to_grammar(constraint: Constraint, any_whitespace: bool = True) -> xgr.Grammar:
    """The xgrammar Grammar for a constraint; ConstraintError where xgrammar refuses it."""
    import xgrammar as xgr

    try:
        match constraint:
            case Choice(choices=choices):
                return xgr.Grammar.from_ebnf(choice_ebnf(choices))
            case Regex(pattern=pattern):
                return xgr.Grammar.from_regex(pattern)
            case JsonSchema():
                return xgr.Grammar.from_json_schema(
                    constraint.text, any_whitespace=any_whitespace, strict_mode=True)
            case LarkGrammar(grammar=grammar):
                return xgr.Grammar.from_ebnf(lark_to_ebnf(grammar))
            case ToolCalls():
                return xgr.Grammar.from_structural_tag(structural_tag_text(constraint))
    except ConstraintError:
        raise
    except Exception as exc:
        raise ConstraintError(
            f"{constraint.mode}: xgrammar rejects it: {_first_line(exc)}") from None
    raise TypeError(f"not a constraint: {constraint!r}")


# ---- tool calls: a structural tag -----------------------------------------------------------

def _tag(tool: Tool) -> dict[str, Any]:
    return {"type": "tag", "begin": tool.call_begin(),
            "content": {"type": "json_schema", "json_schema": tool.parameters},
            "end": tool.call_end()}


def structural_tag(constraint: ToolCalls) -> dict[str, Any]:
    """xgrammar's structural tag (its JSON format) for the tools, as vLLM's hermes builder
    makes one (vllm/tool_parsers/structural_tag_registry.py): under `auto`, free text with
    each `<tool_call>` dispatched to a tag per tool, its arguments by the tool's schema;
    under `required`, one or more calls and nothing else; a named tool, exactly one call
    of it. The tag writes the name itself, so no call can name a tool that is not there."""
    tags = [_tag(tool) for tool in constraint.allowed]
    if constraint.choice == "auto":
        shape: dict[str, Any] = {"type": "triggered_tags", "triggers": [TRIGGER],
                                 "tags": tags}
    else:
        shape = {"type": "tags_with_separator", "tags": tags, "separator": CALL_SEPARATOR,
                 "at_least_one": True, "stop_after_first": constraint.choice == "named"}
    return {"type": "structural_tag", "format": shape}


def structural_tag_text(constraint: ToolCalls) -> str:
    """The structural tag as vLLM's `StructuredOutputsParams.structural_tag` takes it."""
    return json.dumps(structural_tag(constraint), ensure_ascii=False)


def legacy_structural_tag(constraint: ToolCalls) -> dict[str, Any]:
    """The older form (`structures` + `triggers`), the only one vLLM 0.26's guidance
    backend reads: free text with triggered calls, so it serves `auto` only. llguidance
    makes the trigger a special token there (Qwen2.5's own `<tool_call>` token), and reads
    patterns as Unicode: the schemas go with ASCII classes, as every schema sent to it."""
    from playground.backends.guidance import schema_for_guidance

    return {"type": "structural_tag", "triggers": [TRIGGER],
            "structures": [{"begin": tool.call_begin(), "schema": schema_for_guidance(
                tool.parameters),
                            "end": tool.call_end()} for tool in constraint.allowed]}


_NOISE = re.compile(r"\[\d\d:\d\d:\d\d\]\s*|\S+\.(?:cc|cpp|h|hpp|rs|py):\d+:?\s*")


def backend_message(text: str, limit: int = 300) -> str:
    """A backend's error in one line, without its timestamps and internal source paths."""
    lines = [" ".join(_NOISE.sub("", line).split()) for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("Stack trace", "File "))]
    message = " ".join(lines).strip() or "no reason given"
    return message if len(message) <= limit else message[:limit] + "…"


def _first_line(exc: BaseException) -> str:
    return backend_message(str(exc)) if str(exc).strip() else type(exc).__name__
