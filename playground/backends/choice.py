"""Which grammar backend vLLM runs for a model, and why: chosen once, from its tokenizer.

guidance fills masks faster under load (docs/benchmarks.md: constrained/free 0.957 at 32
and 0.872 at 128 requests on the H100 against xgrammar's 0.889 and 0.487), but llguidance
misreads some tokenizers (`guidance_misreads`: with SmolLM2's GGUF-converted one it failed
requests and let output escape). So guidance where llguidance reads the model's tokenizer as
the tokenizer itself does, xgrammar otherwise; a backend the user names is taken as named.
That the two backends' masks agree on every preset is a test on Qwen2.5's tokenizer, the
default GPU model's (tests/backends/test_mask_agreement.py), not a check at start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from playground.backends.names import DEFAULT_BACKEND
from playground.backends.vllm import effective_backend

FAST_BACKEND = "guidance"


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # vLLM's --structured-outputs-backend value
    reason: str  # one line for the engine panel and /status
    config: dict[str, Any] = field(default_factory=dict)  # more structured_outputs_config

    def as_options(self) -> dict[str, Any]:
        return {"backend": self.backend, "backend_choice": self.reason, **self.config}


def named_backend(requested: str, disable_any_whitespace: bool) -> BackendChoice:
    backend = effective_backend(requested, disable_any_whitespace)
    return BackendChoice(backend, "as --structured-outputs-backend says")


def pending() -> BackendChoice:
    """Before the model's tokenizer is read (the page is served before the model loads)."""
    return BackendChoice(DEFAULT_BACKEND, "per model, chosen when the model's tokenizer is "
                                          "read (xgrammar until then)")


def choose_backend(tokenizer: Any | None) -> BackendChoice:
    """guidance if llguidance reads `tokenizer` right, else xgrammar, with the reason."""
    if tokenizer is None:
        return BackendChoice(DEFAULT_BACKEND, "per model: xgrammar, since the model's "
                                              "tokenizer could not be read before start")
    from playground.backends.guidance import guidance_misreads

    try:
        problem = guidance_misreads(tokenizer)
    except Exception as exc:  # llguidance takes fast tokenizers only, and not every one
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        problem = f"llguidance cannot read this tokenizer ({first})"
    if problem:
        return BackendChoice(DEFAULT_BACKEND, f"per model: xgrammar, since {problem}")
    # An object schema that leaves additionalProperties out closes as xgrammar closes it
    # (vLLM's `disable_additional_properties`), so the choice changes no output's shape.
    return BackendChoice(FAST_BACKEND, "per model: guidance, since llguidance reads this "
                                       "tokenizer's tokens as it does (faster masks under "
                                       "load)", {"disable_additional_properties": True})
