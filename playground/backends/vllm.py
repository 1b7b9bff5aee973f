"""Pure adapters from the playground's constraints and settings to vLLM's two front doors.

In-process (`vllm_engine`): the fields of `StructuredOutputsParams` and `SamplingParams`.
Server (`openai_engine`): the JSON body of an OpenAI-compatible request to `vllm serve`.
Both convert constraints the same way, without importing vLLM, so they are tested anywhere.
`vllm_check` alone imports vLLM: its own request validation, run without a GPU.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from playground.backends.guidance import (
    as_sent_to_guidance,
    lark_for_guidance,
    special_tag_ids,
    tool_calls_lark,
)
from playground.backends.xgrammar import legacy_structural_tag, structural_tag_text
from playground.core.constraints import (
    Choice,
    Constraint,
    JsonSchema,
    LarkGrammar,
    Regex,
    ToolCalls,
)
from playground.core.settings import SamplingSettings, chat_messages
from playground.errors import ConstraintError, VllmIntegrationError

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
# The name OpenAI's json_schema response format requires; vLLM only checks it is there.
SCHEMA_NAME = "playground"

def structured_outputs_kwargs(constraint: Constraint, backend: str = "auto",
                              tag_ids: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The StructuredOutputsParams fields for a constraint, for vLLM's `backend`.

    vLLM 0.26 rejects common Lark grammars (`?rule:` with a regex terminal: "Referenced
    rules are not defined"), so for xgrammar (and auto, which tries xgrammar first)
    grammars go through xgrammar's Lark front end to EBNF, which vLLM accepts; guidance
    cannot read that EBNF's `{1, -1}` repetitions but reads Lark without `?rule`, and
    gets regexes with ASCII classes (`as_sent_to_guidance`). Validation still uses the
    user's original constraint. Tools go as xgrammar's structural tag (a JSON string, as
    vLLM takes it); to guidance, which reads only the older structural tag (free text and
    triggered calls), `auto` in that form and `required` or a named tool as the same
    language in Lark (`tool_calls_lark`), its tags as the model's tokens where `tag_ids`
    (`special_tag_ids` of its tokenizer) has them.
    """
    if isinstance(constraint, ToolCalls):
        if backend == "guidance" and constraint.choice == "auto":
            # vLLM's own guidance path: the trigger as the model's special token (Qwen2.5
            # writes <tool_call> as one token, which llguidance refuses as text).
            return {"structural_tag": json.dumps(legacy_structural_tag(constraint))}
        if backend == "guidance":  # calls only: every token of a call's opening is forced
            return {"grammar": tool_calls_lark(constraint, tag_ids)}
        if backend == "outlines":
            raise ConstraintError("tool: vLLM's outlines backend has no structural tags; "
                                  "serve with --structured-outputs-backend xgrammar or guidance")
        return {"structural_tag": structural_tag_text(constraint)}
    if backend == "guidance":
        constraint = as_sent_to_guidance(constraint)
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
            from playground.backends.xgrammar import lark_to_ebnf

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
                   model: str, backend: str = "auto",
                   tag_ids: Mapping[str, int] | None = None) -> tuple[str, dict[str, Any]]:
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
        if settings.tools:
            # Rendered by the server's chat template; "none" keeps vLLM's tool parser out,
            # so the calls come back as the text that is judged (the constraint is sent
            # as structured_outputs, for the constrained run only).
            body.update(tools=settings.tools, tool_choice="none")
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
    fields = structured_outputs_kwargs(constraint, backend, tag_ids)
    if "json" in fields:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": SCHEMA_NAME, "schema": fields["json"]}}
    else:
        body["structured_outputs"] = fields
    return path, body


# ---- vLLM's own request check, without a GPU ---------------------------------------------


def vllm_check(constraint: Constraint, backend: str = "auto",
               disable_any_whitespace: bool = False, tokenizer: Any = None
               ) -> tuple[bool, str | None]:
    """Run vLLM's own request validation on the converted constraint, without a GPU.

    Returns (accepted, vLLM's message). Needs no model: vLLM's check reads only whether
    the model is a diffusion model, and the tokenizer only to fall back to guidance.
    Only vLLM's verdicts (ValueError, TypeError) are rejections; anything else means this
    integration broke (a private API moved) and raises VllmIntegrationError, so a vLLM
    upgrade can never show every constraint as rejected.
    """
    try:
        backend = effective_backend(backend, disable_any_whitespace)
        kwargs = structured_outputs_kwargs(
            constraint, backend, special_tag_ids(tokenizer) if tokenizer is not None else None)
    except ValueError as exc:  # ConstraintError too: the conversion for vLLM refused it
        return False, _one_line(exc)
    try:
        from vllm import SamplingParams
        from vllm.config import StructuredOutputsConfig
        from vllm.sampling_params import StructuredOutputsParams

        config = StructuredOutputsConfig(backend=backend,
                                         disable_any_whitespace=disable_any_whitespace)
        params = SamplingParams(structured_outputs=StructuredOutputsParams(**kwargs))
        params._validate_structured_outputs(SimpleNamespace(is_diffusion=False), config,
                                            tokenizer or _any_tokenizer())
    except (ValueError, TypeError) as exc:
        if isinstance(exc, TypeError) and "argument" in str(exc):  # a signature changed
            raise _broken(exc) from exc
        return False, _one_line(exc)
    except (ImportError, AttributeError, NameError) as exc:
        raise _broken(exc) from exc
    return True, None


def _broken(exc: BaseException) -> VllmIntegrationError:
    from importlib.metadata import version

    return VllmIntegrationError(
        f"internal error: the playground cannot call vLLM {version('vllm')}'s request "
        f"validation ({type(exc).__name__}: {exc}); it was written for vLLM 0.26")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@functools.cache
def _any_tokenizer() -> Any:
    """A tokenizer for vLLM's guidance fallback: the cached CPU model's, if any. Loaded once
    a process (from disk it took 0.18 s, paid by every check: most of the suite's vLLM
    columns); vLLM's validation only reads it."""
    from playground.core.paths import CACHE_DIR

    folders = sorted(CACHE_DIR.glob("smollm2-*/tokenizer_config.json"))
    if not folders:
        return SimpleNamespace()
    import transformers

    return transformers.AutoTokenizer.from_pretrained(folders[-1].parent)
