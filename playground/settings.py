"""Sampling settings of one request, shared by presets, the service and every engine.

Kept apart from the engines so presets (data) never import engine code.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SamplingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(128, ge=1, le=8192)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    # Engines take a 64-bit seed (torch, vLLM); a larger one is an input error, not theirs.
    seed: int | None = Field(0, ge=-(2**63), le=2**63 - 1)
    stop: list[str] = Field(default_factory=list)
    chat_template: bool = True
    system_prompt: str = ""


def chat_messages(prompt: str, settings: SamplingSettings) -> list[dict[str, str]]:
    """The messages a chat template renders: the system prompt, if any, then the user's."""
    messages = [{"role": "user", "content": prompt}]
    if settings.system_prompt:
        messages.insert(0, {"role": "system", "content": settings.system_prompt})
    return messages
