"""Constraints as llguidance receives them: the grammar vLLM's guidance backend builds, the
Lark dialect it reads, the ASCII classes the playground sends it, and a check that
llguidance reads a tokenizer's bytes right. llguidance is imported where used."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from playground.core.constraints import (
    Choice,
    Constraint,
    JsonSchema,
    LarkGrammar,
    Regex,
    ToolCalls,
)
from playground.core.schema import schema_children
from playground.core.tools import CALL_SEPARATOR, CLOSE_TAG, TRIGGER

_INLINED_RULE = re.compile(r"(?m)^(\s*)\?(?=[a-z_][a-z_0-9]*\s*(\.\d+)?\s*:)")

# ASCII spellings of the classes llguidance reads as Unicode, each a class of its own: in
# a class a nested class is a union (`[[0-9]-x]` is digits, "-" and "x"), where a bare
# `0-9-x` would have made "9-x" a range.
_ASCII_CLASSES = {"d": "[0-9]", "w": "[0-9A-Za-z_]",
                  "s": "[\\t\\n\\f\\r ]",  # RE2's \s has no \v
                  "D": "[^0-9]", "W": "[^0-9A-Za-z_]", "S": "[^\\t\\n\\f\\r ]"}


def lark_for_guidance(grammar: str) -> str:
    """llguidance reads Lark but not `?rule:` (which only shapes Lark's parse tree, never
    the language), so the `?` goes."""
    return _INLINED_RULE.sub(r"\1", grammar)


def ascii_classes(pattern: str) -> str:
    """`pattern` with `\\d`, `\\w`, `\\s` and their negations spelled as ASCII classes.
    llguidance reads them as Unicode classes, so with the guidance backend a dummy model
    wrote "202６-11-1２" for `(19|20)\\d{2}-...`, which RE2 (the validator), xgrammar and
    JSON Schema's ECMA-262 all refuse. Every other escape is kept as written."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        if pattern[index] == "\\" and index + 1 < len(pattern):
            escape = pattern[index:index + 2]
            out.append(_ASCII_CLASSES.get(escape[1], escape))
            index += 2
            continue
        out.append(pattern[index])
        index += 1
    return "".join(out)


def schema_for_guidance(schema: Any) -> Any:
    """The schema with every `pattern` and `patternProperties` key in ASCII classes, walked
    as the rest of the playground walks schemas (`schema_children`): data such as `const`
    is never read as a schema, and a property named "pattern" is a schema."""
    if not isinstance(schema, dict):
        return schema
    found = dict(schema)
    if isinstance(found.get("pattern"), str):
        found["pattern"] = ascii_classes(found["pattern"])
    copied: set[str] = set()
    for keys, sub in schema_children(schema):
        key = str(keys[0])
        if len(keys) == 1:
            found[key] = schema_for_guidance(sub)
            continue
        if key not in copied:  # the caller's containers stay as they were
            found[key] = dict(found[key]) if isinstance(found[key], dict) else list(found[key])
            copied.add(key)
        found[key][keys[1]] = schema_for_guidance(sub)
    if isinstance(found.get("patternProperties"), dict):
        found["patternProperties"] = _ascii_pattern_properties(found["patternProperties"])
    return found


def _ascii_pattern_properties(patterns: dict[str, Any]) -> dict[str, Any]:
    """Two patterns may spell the same once in ASCII (`^\\d$`, `^[0-9]$`): a name matching
    both had to fit both schemas, so they merge with allOf."""
    found: dict[str, Any] = {}
    for name, sub in patterns.items():
        key = ascii_classes(name)
        found[key] = {"allOf": [found[key], sub]} if key in found else sub
    return found


def closed_objects(schema: Any) -> Any:
    """(For tests that compile what vLLM compiles; vLLM does this itself.) The schema as
    vLLM 0.26's guidance backend makes it under
    `disable_additional_properties` (`process_for_additional_properties`): every object
    schema with properties and no additionalProperties gets `"additionalProperties":
    false`, which xgrammar assumes anyway."""
    if isinstance(schema, list):
        return [closed_objects(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    found = {key: closed_objects(value) for key, value in schema.items()}
    if "additionalProperties" not in found and ("properties" in found
                                                or "patternProperties" in found):
        found["additionalProperties"] = False
    return found


def as_sent_to_guidance(constraint: Constraint) -> Constraint:
    """What the playground sends vLLM's guidance backend for `constraint`: its regexes with
    ASCII classes, as the validator reads them (a Lark grammar's regexes stay: Lark's
    own, Python `re`, is Unicode too)."""
    match constraint:
        case Regex(pattern=pattern):
            return Regex(ascii_classes(pattern))
        case JsonSchema(schema=schema):
            return JsonSchema(schema_for_guidance(schema))
    return constraint


def guidance_grammar(constraint: Constraint, any_whitespace: bool = True,
                     tag_ids: Mapping[str, int] | None = None) -> str:
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
        case ToolCalls():
            return llguidance.grammar_from("grammar", tool_calls_lark(constraint, tag_ids))
    raise TypeError(f"not a constraint: {constraint!r}")


def tool_calls_lark(constraint: ToolCalls, tag_ids: Mapping[str, int] | None = None) -> str:
    """The tools as a Lark grammar for llguidance, the same language as the xgrammar
    structural tag (backends/xgrammar.structural_tag). Not vLLM's guidance structural tag:
    that reads only the older form (free text with triggered calls, which cannot insist on
    a call). Under `auto` the free text before a call ends lazily at the first
    `<tool_call>`, and the text after the last call holds none.

    `tag_ids`: the tags that are one added token of the model's tokenizer
    (`special_tag_ids`), written as that token (`<[id]>`). llguidance reads such a token's
    bytes as special, never as the tag's text, yet its mask let Qwen2.5's <tool_call>
    through where the text was forced, and the next step failed ("token doesn't satisfy
    the grammar; forced bytes: got '<'"): every required or named call on vLLM's guidance
    backend ended in an engine error on the H200 before this."""
    ids = tag_ids or {}

    def tag(text: str) -> str:
        return f"<[{ids[text]}]>" if text in ids else json.dumps(text)

    def fixed(text: str) -> str:  # a call's fixed text, its tags as tokens where they are
        items = []
        if text.startswith(TRIGGER):
            items.append(tag(TRIGGER))
            text = text.removeprefix(TRIGGER)
        closing = text.endswith(CLOSE_TAG)
        text = text.removesuffix(CLOSE_TAG)
        return " ".join(items + [json.dumps(text)] * bool(text) + [tag(CLOSE_TAG)] * closing)

    auto = constraint.choice == "auto"
    trigger_is_token = TRIGGER in ids
    rules = []
    for index, tool in enumerate(constraint.allowed):
        begin = tool.call_begin()
        if auto and not trigger_is_token:  # the free text's lazy end consumed the trigger
            begin = begin.removeprefix(TRIGGER)
        rules += [f"call_{index}: {fixed(begin)} args_{index} {fixed(tool.call_end())}",
                  f"args_{index}: %json {json.dumps(schema_for_guidance(tool.parameters))}"]
    calls = " | ".join(f"call_{index}" for index in range(len(rules) // 2))
    if auto and trigger_is_token:  # text cannot hold the token: free text is any text
        start = ["start: (FREE? call)* FREE?", "FREE: /(.|\\n)+/"]
    elif auto:
        start = ["start: (free call)* TAIL", f"free[lazy]: /(.|\\n)*{TRIGGER}/",
                 f"TAIL: /(.|\\n)*/ & ~/(.|\\n)*{TRIGGER}(.|\\n)*/"]
    elif constraint.choice == "named":
        start = ["start: call"]
    else:
        start = [f"start: call ({json.dumps(CALL_SEPARATOR)} call)*"]
    return "\n".join([*start, f"call: {calls}", *rules]) + "\n"


def special_tag_ids(tokenizer: Any) -> dict[str, int]:
    """The call tags that are one added token of `tokenizer` (Qwen2.5: <tool_call> 151657,
    </tool_call> 151658), for `tool_calls_lark`; none for a tokenizer without them."""
    try:
        added = tokenizer.get_added_vocab()
    except Exception:  # not a Hugging Face tokenizer: the tags stay text
        return {}
    return {name: int(added[name]) for name in (TRIGGER, CLOSE_TAG) if name in added}


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
