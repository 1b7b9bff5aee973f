"""Sampling settings of one request, shared by presets, the service and every engine.

Kept apart from the engines so presets (data) never import engine code.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator


class SamplingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(128, ge=1, le=8192)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    # Engines take a 64-bit seed (torch, vLLM); a larger one is an input error, not theirs.
    seed: int | None = Field(0, ge=-(2**63), le=2**63 - 1)
    stop: list[str] = Field(default_factory=list)
    # Strict: true or false, as the request options are ("yes" and 1 are refused).
    chat_template: bool = Field(True, strict=True)
    system_prompt: str = ""
    # The Tool call tab's tools (OpenAI's format), rendered into the prompt by the chat
    # template for both runs of a click. Private: set from the constraint by the service
    # (`with_tools`), never from options, so it is in no dump (history, share, the API).
    _tools: list[dict[str, Any]] = PrivateAttr(default_factory=list)

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self._tools

    def with_tools(self, tools: list[dict[str, Any]]) -> SamplingSettings:
        copy = self.model_copy()
        copy._tools = list(tools)
        return copy

    @field_validator("max_tokens", "temperature", "top_p", "seed", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        """A number, not true (which pydantic would read as 1) or text."""
        if isinstance(value, bool | str):
            raise ValueError(f"must be a number, not {type(value).__name__} {value!r}")
        return value

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: list[str]) -> list[str]:
        """An empty stop string matches before the first character: every output would
        end after one token, which reads as the engine breaking the constraint."""
        if any(stop == "" for stop in value):
            raise ValueError("a stop string cannot be empty (it would end every output at "
                             "its first token); leave it out")
        return value


class RequestOptions(BaseModel):
    """What a request asks of the playground around its two runs, not of the sampler.

    They come in the same options object as the sampling settings (the API's `options`,
    the CLI's flags); `split_options` takes them out, so SamplingSettings stays strict.
    Add a request-level option here as a field.
    """

    model_config = ConfigDict(extra="forbid", strict=True)  # true or false, not "yes" or 1

    inspect: bool = False  # the token inspector: replay and raw distributions after the run
    # An inspector option (it turns the inspector on): the constrained run's tokens replayed
    # through xgrammar and llguidance, with each step where their masks differ
    # (playground.doctor.mask_diff).
    compare_backends: bool = False
    # Generate anyway: send what the engine's backend can enforce of a JSON Schema (the
    # doctor's lenient schema), judge by the full one (playground.doctor.lenient).
    lenient: bool = False


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(sampling settings, request options) of one options object, as plain dicts."""
    request = {key: value for key, value in options.items()
               if key in RequestOptions.model_fields}
    return {key: value for key, value in options.items() if key not in request}, request


def chat_messages(prompt: str, settings: SamplingSettings, tools_in_system: bool = False
                  ) -> list[dict[str, str]]:
    """The messages a chat template renders: the system prompt, if any, then the user's.

    `tools_in_system`: for a template with no tools section, the settings' tools are
    written into the system prompt in Hermes style (core/tools.tools_prompt)."""
    messages = [{"role": "user", "content": prompt}]
    system = settings.system_prompt
    if tools_in_system and settings.tools:
        from playground.core.tools import tools_prompt

        system = "\n\n".join(part for part in (system, tools_prompt(settings.tools)) if part)
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return messages
