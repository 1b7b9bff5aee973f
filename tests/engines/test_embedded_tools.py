"""The Tool call tab on the real SmolLM2-135M (CPU, xgrammar's structural tag): a small
model that calls badly, so the constrained side is what must hold."""

import asyncio
import json

import pytest

from playground.core.presets import load_presets
from playground.core.settings import SamplingSettings
from playground.core.tools import split_calls
from playground.engines.base import encode_prompt
from playground.run.service import run_request

pytestmark = pytest.mark.slow
PRESETS = load_presets()
TOOL_PRESETS = [name for name, preset in PRESETS.items() if preset.mode == "tool"]


def with_choice(name, choice):
    document = json.loads(PRESETS[name].constraint_text)
    document["tool_choice"] = choice
    return json.dumps(document)


def run(engine, name, constraint_text, **options):
    preset = PRESETS[name]
    return asyncio.run(run_request(engine, "tool", constraint_text, preset.prompt,
                                   {**preset.settings.model_dump(), **options}))


@pytest.mark.parametrize("name", TOOL_PRESETS)
def test_every_tool_preset_gives_valid_calls(embedded_engine, name):
    result = run(embedded_engine, name, PRESETS[name].constraint_text, max_tokens=160)
    constrained = result["constrained"]
    assert constrained["verdict"] in {"valid", "truncated"}, constrained
    assert not constrained["constraint_escaped"]
    assert all(not call["errors"] for call in constrained["tool_calls"]["calls"]
               if constrained["verdict"] == "valid")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_required_never_ends_without_a_call(embedded_engine, seed):
    name = "Weather lookup (tool call)"
    result = run(embedded_engine, name, with_choice(name, "required"), seed=seed,
                 temperature=1.0, max_tokens=96)
    constrained = result["constrained"]
    assert constrained["verdict"] in {"valid", "truncated"}, constrained
    if constrained["finish_reason"] == "stop":
        assert constrained["tool_calls"]["calls"], constrained
        assert constrained["text"].startswith("<tool_call>")


def test_text_outside_the_tags_is_free(embedded_engine):
    """Under auto, a run that writes text keeps it: the tokens outside a call are free."""
    name = "Weather lookup (tool call)"
    result = run(embedded_engine, name, with_choice(name, "auto"), max_tokens=48,
                 inspect=True)
    constrained = result["constrained"]
    assert constrained["verdict"] in {"valid", "truncated"}, constrained
    pieces = split_calls(constrained["text"])
    kinds = [token["kind"] for token in constrained["tokens"]]
    if isinstance(pieces[0], str) and pieces[0].strip():  # it began with text
        assert kinds[0] == "free", constrained["tokens"][:3]


def test_the_tools_are_in_the_prompt_of_both_runs(embedded_engine):
    """SmolLM2's template has no tools section: the tools go into its system prompt."""
    tools = PRESETS["Weather lookup (tool call)"].to_constraint().openai_tools()
    plain = SamplingSettings()
    ids = encode_prompt(embedded_engine.tokenizer, "hi", plain.with_tools(tools))
    text = embedded_engine.tokenizer.decode(ids)
    assert "<tools>" in text and '"name": "get_weather"' in text
    assert len(ids) > len(encode_prompt(embedded_engine.tokenizer, "hi", plain))
