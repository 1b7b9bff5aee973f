"""Pure adapters from the playground's constraints and settings to vLLM's two front doors.

In-process (`vllm_engine`): the fields of `StructuredOutputsParams` and `SamplingParams`.
Server (`openai_engine`): the JSON body of an OpenAI-compatible request to `vllm serve`.
Both convert constraints the same way; none of this imports vLLM, so it is tested anywhere.
"""

from __future__ import annotations

import re
from typing import Any

from playground.constraints import Choice, Constraint, JsonSchema, LarkGrammar, Regex
from playground.settings import SamplingSettings, chat_messages

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
# The name OpenAI's json_schema response format requires; vLLM only checks it is there.
SCHEMA_NAME = "playground"

_INLINED_RULE = re.compile(r"(?m)^(\s*)\?(?=[a-z_][a-z_0-9]*\s*(\.\d+)?\s*:)")


def lark_for_guidance(grammar: str) -> str:
    """llguidance reads Lark but not `?rule:` (which only shapes Lark's parse tree, never
    the language), so the `?` goes."""
    return _INLINED_RULE.sub(r"\1", grammar)


def structured_outputs_kwargs(constraint: Constraint, backend: str = "auto") -> dict[str, Any]:
    """The StructuredOutputsParams fields for a constraint, for vLLM's `backend`.

    vLLM 0.26 rejects common Lark grammars (`?rule:` with a regex terminal: "Referenced
    rules are not defined"), so for xgrammar (and auto, which tries xgrammar first)
    grammars go through xgrammar's Lark front end to EBNF, which vLLM accepts; guidance
    cannot read that EBNF's `{1, -1}` repetitions but reads Lark without `?rule`.
    Validation still uses the user's original grammar.
    """
    match constraint:
        case Choice(choices=choices):
            return {"choice": list(choices)}
        case Regex(pattern=pattern):
            return {"regex": pattern}
        case JsonSchema(schema=schema):
            return {"json": schema}
        case LarkGrammar(grammar=grammar):
            if backend == "guidance":
                return {"grammar": lark_for_guidance(grammar)}
            from playground.engines.xgrammar_adapter import lark_to_ebnf

            return {"grammar": lark_to_ebnf(grammar)}
    raise TypeError(f"not a constraint: {constraint!r}")


def sampling_kwargs(settings: SamplingSettings) -> dict[str, Any]:
    """SamplingParams fields; stop strings stay in the output so it can be judged."""
    return {"max_tokens": settings.max_tokens, "temperature": settings.temperature,
            "top_p": settings.top_p, "seed": settings.seed, "stop": settings.stop or None,
            "include_stop_str_in_output": True}


def effective_backend(backend: str, disable_any_whitespace: bool) -> str:
    """vLLM allows disable_any_whitespace with xgrammar and guidance only; under auto
    the playground picks xgrammar, vLLM's own first choice."""
    if not disable_any_whitespace:
        return backend
    if backend == "outlines":
        raise ValueError("--disable-any-whitespace works with the xgrammar and guidance "
                         "backends only, not outlines")
    return "xgrammar" if backend == "auto" else backend


def openai_request(prompt: str, constraint: Constraint | None, settings: SamplingSettings,
                   model: str, backend: str = "auto") -> tuple[str, dict[str, Any]]:
    """(path, JSON body) of one streamed request to an OpenAI-compatible vLLM server.

    The chat template on: /v1/chat/completions with the messages, rendered by the server;
    off: /v1/completions with the raw prompt, no special tokens added (as in-process).
    JSON goes as OpenAI's `response_format` json_schema; choice, regex and grammar as
    vLLM's top-level `structured_outputs` (what the openai client sends as `extra_body`).
    No whitespace setting travels: vLLM 0.26 accepts `disable_any_whitespace` in a
    request but its backends read only the server's (`--structured-outputs-config`).
    Usage on every chunk and each delta's token ids (vLLM extensions) count the tokens
    of a delta exactly, which may hold several.
    """
    body: dict[str, Any] = {"model": model}
    if settings.chat_template:
        path = CHAT_PATH
        body["messages"] = chat_messages(prompt, settings)
    else:
        path = COMPLETIONS_PATH
        body["prompt"] = prompt
        body["add_special_tokens"] = False
    body.update(max_tokens=settings.max_tokens, temperature=settings.temperature,
                top_p=settings.top_p, include_stop_str_in_output=True, return_token_ids=True,
                stream=True,
                stream_options={"include_usage": True, "continuous_usage_stats": True})
    if settings.seed is not None:
        body["seed"] = settings.seed
    if settings.stop:
        body["stop"] = list(settings.stop)
    if constraint is None:
        return path, body
    fields = structured_outputs_kwargs(constraint, backend)
    if "json" in fields:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": SCHEMA_NAME, "schema": fields["json"]}}
    else:
        body["structured_outputs"] = fields
    return path, body
