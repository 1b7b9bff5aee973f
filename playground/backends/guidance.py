"""Constraints as llguidance receives them: the grammar vLLM's guidance backend builds, the
Lark dialect it reads, and a check that llguidance reads a tokenizer's bytes right.
llguidance is imported where used."""

from __future__ import annotations

import json
import re
from typing import Any

from playground.core.constraints import Choice, Constraint, JsonSchema, LarkGrammar, Regex

_INLINED_RULE = re.compile(r"(?m)^(\s*)\?(?=[a-z_][a-z_0-9]*\s*(\.\d+)?\s*:)")


def lark_for_guidance(grammar: str) -> str:
    """llguidance reads Lark but not `?rule:` (which only shapes Lark's parse tree, never
    the language), so the `?` goes."""
    return _INLINED_RULE.sub(r"\1", grammar)


def guidance_grammar(constraint: Constraint, any_whitespace: bool = True) -> str:
    """The llguidance grammar vLLM 0.26's guidance backend builds (backend_guidance.py)."""
    import llguidance

    match constraint:
        case Choice(choices=choices):
            return llguidance.grammar_from("choice", json.dumps(list(choices)))
        case Regex(pattern=pattern):
            return llguidance.grammar_from("regex", pattern)
        case JsonSchema(schema=schema):
            return llguidance.LLMatcher.grammar_from_json_schema(
                json.dumps(schema), defaults={"whitespace_flexible": any_whitespace})
        case LarkGrammar(grammar=grammar):
            return llguidance.grammar_from("grammar", lark_for_guidance(grammar))
    raise TypeError(f"not a constraint: {constraint!r}")


def guidance_misreads(tokenizer: Any, vocab_size: int | None = None, sample: int = 2000
                      ) -> str | None:
    """Where llguidance reads a token's bytes differently from the tokenizer itself.

    Found with real weights on the H100: transformers' GGUF conversion writes a
    tokenizer.json whose decoder is a Sequence (ByteFallback, Fuse, Replace, ByteLevel)
    rather than ByteLevel; llguidance then takes byte-level tokens literally (" " as the
    two bytes of "Ġ"), so its masks forbid every token that starts with a space and vLLM's
    guidance backend fails requests ("SELECTT") or lets output escape. None if it agrees.
    """
    import llguidance.hf

    ll = llguidance.hf.from_tokenizer(tokenizer, vocab_size or len(tokenizer))
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    for token in range(min(sample, len(tokenizer))):
        if token in special:
            continue
        text = tokenizer.decode([token])
        if "\ufffd" in text:  # a partial UTF-8 sequence: its bytes are not text
            continue
        seen = ll.decode_bytes([token])
        if seen != text.encode("utf-8"):
            return (f"llguidance reads token {token} ({text!r}) as {seen!r}: its masks will "
                    "be wrong for this tokenizer")
    return None
