"""Typed and size checks on a request's arguments, before any work is done for it.

The API takes what any client sends (null, numbers, lists, a megabyte of text), so each
argument is checked for its type and its limit here, and a bad one is an InputError
naming the argument: never a Python exception name, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from playground.core import limits
from playground.core.constraints import MODES
from playground.core.settings import SamplingSettings
from playground.core.text_fields import check_text, check_texts
from playground.errors import InputError, LimitError

_TYPE_NAMES = {type(None): "null", bool: "a boolean", int: "a number", float: "a number",
               str: "text", list: "a list", dict: "an object"}


def _kind(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def check_request(mode: Any, constraint_text: Any, prompt: Any, options: Any,
                  need_prompt: bool = True) -> dict[str, Any]:
    """Types and sizes of one request's arguments; returns the options as a dict.

    `need_prompt`: refuse an empty prompt (a run does; a share link may hold none)."""
    if not isinstance(mode, str) or mode not in MODES:
        shown = repr(mode) if isinstance(mode, str) else _kind(mode)
        raise InputError(f"mode: {shown[:40]} is not a mode; give one of {', '.join(MODES)}")
    if not isinstance(constraint_text, str):
        raise InputError(f"constraint: give the constraint as text, not {_kind(constraint_text)}")
    if not isinstance(prompt, str):
        raise InputError(f"prompt: give the prompt as text, not {_kind(prompt)}")
    limits.active().require("max_prompt_chars", len(prompt))
    check_text("constraint", constraint_text)
    check_text("prompt", prompt)
    if need_prompt and not prompt.strip():
        raise InputError("prompt: write a prompt first")
    return check_options(options)


def check_options(options: Any) -> dict[str, Any]:
    """Options as an object (a JSON string of one is read); sizes of their text fields."""
    if options is None:
        return {}
    if isinstance(options, str):
        limits.active().require("max_constraint_chars", len(options), "the options")
        check_text("options", options)
        if not options.strip():
            return {}
        try:
            options = json.loads(options)
        except (json.JSONDecodeError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            raise InputError(f"options: not a JSON object: {reason}") from None
    if not isinstance(options, dict):
        raise InputError(f'options: give an object such as {{"max_tokens": 64}}, '
                         f"not {_kind(options)}")
    limit = limits.active()
    system = options.get("system_prompt")
    if isinstance(system, str):
        limit.require("max_system_prompt_chars", len(system))
        check_text("options: system_prompt", system)
    stop = options.get("stop")
    if isinstance(stop, list):
        limit.require("max_stop_strings", len(stop))
        check_texts("options: stop string", stop)
        if any(isinstance(item, str) and len(item) > 1000 for item in stop):
            raise InputError("options: stop: each stop string must be under 1,000 characters")
    return options


async def check_context(engine: Any, prompt: str, settings: SamplingSettings) -> int | None:
    """Prompt tokens plus max tokens within the model's context; the prompt's token count."""
    if engine.context_length is None:
        return None
    tokens = await asyncio.to_thread(engine.count_prompt_tokens, prompt, settings)
    if tokens is None:
        return None
    if tokens + settings.max_tokens > engine.context_length:
        room = engine.context_length - tokens
        advice = (f"lower max tokens to {room} or less" if room > 0
                  else "shorten the prompt")
        raise LimitError(
            f"the prompt is {tokens:,} tokens and max tokens {settings.max_tokens:,}: together "
            f"over the model's context of {engine.context_length:,} tokens; {advice} (the "
            "context is the engine's: --max-model-len for vLLM)")
    return tokens
