"""What an engine's backend receives: the coverage column an engine stands for, and a
constraint exactly as that backend is sent it (what the page's "sent" view shows)."""

from __future__ import annotations

import json
from typing import Any

from playground.core.constraints import Constraint
from playground.errors import ConstraintError


def engine_backend(engine: Any) -> str:
    """The coverage column of an engine: "xgrammar" for the CPU engine (xgrammar without
    vLLM's checks), "vllm:<backend>" for vLLM in-process or a vLLM server."""
    backend = getattr(engine, "backend", None) or engine.info.options.get("backend")
    if not isinstance(backend, str):
        return "xgrammar"
    backend = backend.split()[0]
    return f"vllm:{'xgrammar' if backend == 'auto' else backend}"


def sent(constraint: Constraint, backend: str = "xgrammar",
         any_whitespace: bool = True) -> dict[str, str]:
    """The constraint exactly as `backend` receives it: {"backend", "language", "text"}.

    xgrammar (the CPU engine): the EBNF xgrammar builds from it. vLLM: the field of
    StructuredOutputsParams, converted as vLLM is sent it (a Lark grammar as EBNF for
    xgrammar, as Lark without `?rule` for guidance); the schema as JSON.
    """
    if backend == "xgrammar":
        from playground.backends.xgrammar import to_grammar

        try:
            text = str(to_grammar(constraint, any_whitespace))
        except ConstraintError as exc:
            text = f"# xgrammar refuses it: {exc}"
        return {"backend": backend, "language": "ebnf", "text": text}
    from playground.backends.vllm import structured_outputs_kwargs

    raw = backend.removeprefix("vllm:")
    try:
        fields = structured_outputs_kwargs(constraint, raw)
    except ConstraintError as exc:
        return {"backend": backend, "language": "text", "text": f"# not convertible: {exc}"}
    key, value = next(iter(fields.items()))
    if key == "structural_tag":  # a JSON string: shown laid out
        return {"backend": backend, "language": "json",
                "text": json.dumps(json.loads(value), indent=2, ensure_ascii=False)}
    if key in ("json", "choice"):
        return {"backend": backend, "language": "json", "text": json.dumps(value, indent=2)}
    language = {"regex": "regex", "grammar": "lark" if raw == "guidance" else "ebnf"}[key]
    return {"backend": backend, "language": language, "text": value}
