"""Copy as code: a tab's constraint and settings as runnable vLLM code.

Three forms: vLLM's offline API (`LLM` + `SamplingParams`), the OpenAI-compatible request
to `vllm serve` (the `openai` client) and the same request as curl. Each carries the
constraint exactly as the engine receives it (after the Lark conversion for the backend),
so what worked here works there. Pure functions: no vLLM, no model.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from playground.backends.names import DEFAULT_BACKEND, VLLM_BACKENDS
from playground.backends.vllm import (
    CHAT_PATH,
    COMPLETIONS_PATH,
    effective_backend,
    openai_request,
    sampling_kwargs,
    structured_outputs_kwargs,
)
from playground.core.constraints import Constraint, JsonSchema, ToolCalls
from playground.core.settings import SamplingSettings, chat_messages

Form = Literal["python", "openai", "curl"]
FORMS: tuple[Form, ...] = ("python", "openai", "curl")
DEFAULT_MODEL = "Qwen/Qwen2.5-7B-Instruct"
_COMMON = {"model", "max_tokens", "temperature", "top_p", "seed", "stop"}
OPENAI_CHAT = _COMMON | {"messages", "response_format", "tools", "tool_choice"}
OPENAI_COMPLETIONS = _COMMON | {"prompt"}
# The CPU model's GGUF is a conversion of this checkpoint, which vLLM serves as is.
_HF_NAMES = {"SmolLM2-135M-Instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}


@dataclass(frozen=True)
class Target:
    """Where the code will run: the model and the engine-wide structured-output options."""

    model: str = DEFAULT_MODEL
    backend: str = DEFAULT_BACKEND
    disable_any_whitespace: bool = False
    # guidance chosen per model closes object schemas as xgrammar does (backends/choice.py).
    disable_additional_properties: bool = False
    base_url: str = "http://localhost:8000/v1"
    # The Tool call tab's tags as the model's tokens (the engine's tool_tag_ids), which
    # guidance needs for Qwen2.5 (backends/guidance.tool_calls_lark).
    tag_ids: dict[str, int] = field(default_factory=dict)
    # More `LLM(...)` arguments (e.g. load_format="dummy" for a test without weights).
    engine_args: dict[str, Any] = field(default_factory=dict)

    @property
    def engine_backend(self) -> str:
        return effective_backend(self.backend, self.disable_any_whitespace)

    @property
    def structured_outputs_config(self) -> dict[str, Any]:
        config = {"backend": self.engine_backend,
                  "disable_any_whitespace": self.disable_any_whitespace}
        if self.disable_additional_properties and self.engine_backend == "guidance":
            config["disable_additional_properties"] = True
        return config


def target_for(info: dict[str, Any]) -> Target:
    """The target matching a running engine (`EngineInfo.as_dict()`): its model, backend,
    whitespace and server; for the CPU model the checkpoint it was converted from."""
    options = info.get("options") or {}
    model = info.get("model") or DEFAULT_MODEL
    backend = str(options.get("backend") or options.get("structured_outputs_backend")
                  or DEFAULT_BACKEND).split()[0]  # "guidance (read from the server)"
    base_url = options.get("base_url")
    return Target(model=DEFAULT_MODEL if model.startswith("(") else _HF_NAMES.get(model, model),
                  backend=backend if backend in VLLM_BACKENDS else DEFAULT_BACKEND,
                  disable_any_whitespace=bool(options.get("disable_any_whitespace", False)),
                  disable_additional_properties=bool(
                      options.get("disable_additional_properties", False)),
                  tag_ids={str(k): int(v) for k, v in (options.get("tool_tag_ids") or {}).items()},
                  **({"base_url": _v1(base_url)} if base_url else {}))


def _v1(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


# ---- what the engine receives ----------------------------------------------------------


def structured(constraint: Constraint, target: Target) -> dict[str, Any]:
    """StructuredOutputsParams fields, converted for the target's backend."""
    return structured_outputs_kwargs(constraint, target.engine_backend, target.tag_ids)


def sampling(settings: SamplingSettings) -> dict[str, Any]:
    """SamplingParams fields (without the constraint), unset ones left out."""
    return {k: v for k, v in sampling_kwargs(settings).items() if v is not None}


def request_body(constraint: Constraint, prompt: str, settings: SamplingSettings,
                 target: Target) -> dict[str, Any]:
    """The JSON body for `vllm serve`: the server engine's own request (JSON schemas as
    OpenAI's `response_format`, the other modes as vLLM's `structured_outputs`), not
    streamed."""
    if isinstance(constraint, ToolCalls) and settings.chat_template:
        return _tools_body(constraint, prompt, settings, target)
    _, body = openai_request(prompt, constraint, settings, target.model, target.engine_backend,
                             target.tag_ids)
    # What the playground reads from a stream, not what a user's code needs.
    for key in ("stream", "stream_options", "return_token_ids"):
        body.pop(key, None)
    return body


def _tools_body(constraint: ToolCalls, prompt: str, settings: SamplingSettings,
                target: Target) -> dict[str, Any]:
    """OpenAI's own tool calling: the tools and the tool choice, for `vllm serve` with the
    hermes tool parser, which builds the same structural tag from them (vLLM 0.26's
    structural_tag_registry; under `auto` only for a `strict` tool, so every tool is)."""
    tools = [{"type": "function", "function": {**tool["function"], "strict": True}}
             for tool in constraint.openai_tools()]
    _, body = openai_request(prompt, None, settings.with_tools(tools), target.model,
                             target.engine_backend)
    body["tool_choice"] = constraint.openai_tool_choice()
    for key in ("stream", "stream_options", "return_token_ids"):
        body.pop(key, None)
    return body


def endpoint(settings: SamplingSettings) -> str:
    return (CHAT_PATH if settings.chat_template else COMPLETIONS_PATH).removeprefix("/v1/")


# ---- the three forms -------------------------------------------------------------------


def snippet(form: Form, constraint: Constraint, prompt: str, settings: SamplingSettings,
            target: Target | None = None) -> str:
    target = target or Target()
    if form == "python":
        return python_snippet(constraint, prompt, settings, target)
    if form == "openai":
        return openai_snippet(constraint, prompt, settings, target)
    if form == "curl":
        return curl_snippet(constraint, prompt, settings, target)
    raise ValueError(f"unknown form {form!r}; use one of {', '.join(FORMS)}")


def python_snippet(constraint: Constraint, prompt: str, settings: SamplingSettings,
                   target: Target) -> str:
    fields = structured(constraint, target)
    (name, value), = fields.items()
    variable = {"json": "schema", "choice": "choices"}.get(name, name)
    config = py(target.structured_outputs_config, 4)
    llm_args = [py(target.model), f"structured_outputs_config={config}"]
    llm_args += [f"{key}={py(value, 4)}" for key, value in target.engine_args.items()]
    params = [f"{key}={py(value, 4)}" for key, value in sampling(settings).items()]
    params.append(f"structured_outputs=StructuredOutputsParams({name}={variable})")
    literal = py(value)
    if name == "structural_tag":  # vLLM takes it as a JSON string: written as its object
        literal = f"json.dumps({py(json.loads(value))})"
    lines = [
        f"# {constraint.mode} constraint from structured-playground, for vLLM's offline API.",
        *(["import json", ""] if name == "structural_tag" else []),
        "from vllm import LLM, SamplingParams",
        "from vllm.sampling_params import StructuredOutputsParams",
        "",
        f"{variable} = {literal}",
        "",
        "# The structured-output backend and whitespace are engine-wide options in vLLM.",
        "llm = LLM(" + _args(llm_args) + ")",
        "params = SamplingParams(" + _args(params) + ")",
    ]
    if settings.chat_template and isinstance(constraint, ToolCalls):
        # The chat template renders the tools; the structural tag constrains the calls.
        lines += [f"tools = {py(constraint.openai_tools())}",
                  f"messages = {py(chat_messages(prompt, settings))}",
                  "outputs = llm.chat(messages, params, tools=tools)"]
    elif settings.chat_template:
        lines += [f"messages = {py(chat_messages(prompt, settings))}",
                  "outputs = llm.chat(messages, params)"]
    else:
        lines += [f"prompt = {py(prompt)}", "outputs = llm.generate(prompt, params)"]
    lines.append("print(outputs[0].outputs[0].text)")
    return "\n".join(lines) + "\n"


def openai_snippet(constraint: Constraint, prompt: str, settings: SamplingSettings,
                   target: Target) -> str:
    body = request_body(constraint, prompt, settings, target)
    # The openai client takes OpenAI's fields; vLLM's own go through extra_body (and so
    # does response_format for completions: OpenAI has it for chat only).
    known = OPENAI_CHAT if settings.chat_template else OPENAI_COMPLETIONS
    extra = {key: body.pop(key) for key in list(body) if key not in known}
    call = "client.chat.completions.create" if settings.chat_template else \
        "client.completions.create"
    args = [f"{key}={py(value, 4)}" for key, value in body.items()]
    args.append(f"extra_body={py(extra, 4)}")
    result = ("response.choices[0].message.content" if settings.chat_template
              else "response.choices[0].text")
    tools = isinstance(constraint, ToolCalls) and settings.chat_template
    if tools:
        result = "response.choices[0].message.tool_calls, response.choices[0].message.content"
    return "\n".join([
        f"# {constraint.mode} constraint from structured-playground, for `vllm serve`.",
        _serve_comment(target, tools),
        "from openai import OpenAI",
        "",
        f"client = OpenAI(base_url={py(target.base_url)}, api_key=\"EMPTY\")",
        f"response = {call}(" + _args(args) + ")",
        f"print({result})",
    ]) + "\n"


def curl_snippet(constraint: Constraint, prompt: str, settings: SamplingSettings,
                 target: Target) -> str:
    body = json.dumps(request_body(constraint, prompt, settings, target), indent=2,
                      ensure_ascii=False)
    # A quoted heredoc passes the body to curl untouched: no shell quoting to get wrong,
    # and no line of indented JSON can be the bare delimiter.
    return "\n".join([
        f"# {constraint.mode} constraint from structured-playground, for `vllm serve`.",
        _serve_comment(target, isinstance(constraint, ToolCalls) and settings.chat_template),
        f"curl {target.base_url}/{endpoint(settings)} \\",
        "  -H 'Content-Type: application/json' \\",
        "  -d @- <<'EOF'",
        body,
        "EOF",
    ]) + "\n"


def curl_body(text: str) -> dict[str, Any]:
    """The JSON body inside a curl snippet (tests and users checking one)."""
    start = text.index("<<'EOF'\n") + len("<<'EOF'\n")
    return json.loads(text[start:text.rindex("\nEOF")])


def _serve_comment(target: Target, tools: bool = False) -> str:
    config = json.dumps(target.structured_outputs_config)
    parser = " --enable-auto-tool-choice --tool-call-parser hermes" if tools else ""
    return (f"# Server: vllm serve {target.model}{parser} --structured-outputs-config "
            f"'{config}'")


# ---- Python source ---------------------------------------------------------------------


def _args(items: list[str]) -> str:
    return "\n" + "".join(f"    {item},\n" for item in items)


def py(value: Any, indent: int = 0) -> str:
    """A Python literal for JSON-like data, laid out like indented JSON."""
    pad, inner = " " * indent, " " * (indent + 4)
    if isinstance(value, dict):
        if not value:
            return "{}"
        flat = "{" + ", ".join(f"{py(str(k))}: {py(v)}" for k, v in value.items()) + "}"
        if len(flat) <= 72 and "\n" not in flat:
            return flat
        items = [f"{inner}{py(str(k))}: {py(v, indent + 4)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f",\n{pad}}}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        flat = "[" + ", ".join(py(v) for v in value) + "]"
        if len(flat) <= 72 and "\n" not in flat:
            return flat
        return "[\n" + ",\n".join(f"{inner}{py(v, indent + 4)}" for v in value) + f",\n{pad}]"
    if isinstance(value, str):
        return _py_str(value)
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    raise TypeError(f"no Python literal for {type(value).__name__}")


def _py_str(text: str) -> str:
    """Multi-line text (grammars) as a raw triple-quoted string where that is exact,
    everything else as an escaped one-line literal."""
    if ("\n" in text and '"""' not in text and not text.endswith(("\\", '"'))
            and all(c == "\n" or c.isprintable() for c in text)):
        return 'r"""' + text + '"""'
    return json.dumps(text, ensure_ascii=False) if _json_is_python(text) else repr(text)


def _json_is_python(text: str) -> bool:
    # JSON's escapes mean the same in Python; a lone surrogate would not encode as UTF-8.
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def lenient_for(constraint: Constraint, target: Target, limit_s: float = 20.0
                ) -> tuple[Constraint, str]:
    """A lenient run's constraint as the target's backend would be sent it, and a comment
    saying what it leaves unenforced (other modes: the constraint, no comment).
    TimeoutError where the doctor could not find it in time."""
    if not isinstance(constraint, JsonSchema):
        return constraint, ""
    from playground.doctor.lenient import bounded_lenient

    backend = "xgrammar" if target.engine_backend == "auto" else target.engine_backend
    # vLLM's own request validation where vLLM is installed: what the snippet will meet.
    column = f"vllm:{backend}" if importlib.util.find_spec("vllm") else backend
    relaxed = bounded_lenient(constraint, column, limit_s, view=True)
    unenforced = ", ".join(relaxed.not_enforced) or "nothing"
    return relaxed.constraint, f"# Lenient ({relaxed.how}); not enforced: {unenforced}\n"


def from_args(args: Any, constraint: Constraint, prompt: str, options: dict[str, Any]) -> str:
    """`run --export FORM`: the snippet for the run the flags describe, for the vLLM
    engine those flags would start."""
    from playground.run.service import parse_settings

    base_url = getattr(args, "base_url", None)
    target = Target(model=args.model or DEFAULT_MODEL,
                    backend=args.structured_outputs_backend or DEFAULT_BACKEND,
                    disable_any_whitespace=args.disable_any_whitespace,
                    **({"base_url": _v1(base_url)} if base_url else {}))
    note = ""
    if getattr(args, "lenient", False):
        from playground.errors import InputError

        try:
            constraint, note = lenient_for(constraint, target)
        except TimeoutError as exc:
            raise InputError(f"lenient: the schema's lenient form was not found: {exc}"
                             ) from None
    return note + snippet(args.export, constraint, prompt, parse_settings(options), target)
