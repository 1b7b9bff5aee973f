"""The Lark parser of a user's grammar: built to check a grammar, and used to judge text."""

from __future__ import annotations

from functools import lru_cache

import lark

from playground.errors import ConstraintError


# Bounded in entries, and in memory by --max-constraint-chars per grammar; built and used
# in playground.judging.workers' worker processes, which are replaced past a time limit.
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


def _one_line(message: str) -> str:
    return " ".join(message.split())
