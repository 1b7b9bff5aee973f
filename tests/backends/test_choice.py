"""The grammar backend vLLM runs, chosen per model from its tokenizer (backends/choice.py)."""

from __future__ import annotations

import pytest

from playground.backends.choice import choose_backend, named_backend, pending
from tests.support import misread_tokenizer, qwen_tokenizer


def test_qwen_gets_guidance_since_llguidance_reads_its_tokenizer():
    choice = choose_backend(qwen_tokenizer())
    assert choice.backend == "guidance"
    assert choice.reason.startswith("per model: guidance")
    # Object schemas close as under xgrammar: the choice changes no output's shape.
    assert choice.config == {"disable_additional_properties": True}


def test_a_tokenizer_llguidance_misreads_gets_xgrammar_with_the_token_named():
    choice = choose_backend(misread_tokenizer(qwen_tokenizer()))
    assert choice.backend == "xgrammar"
    assert "llguidance reads token" in choice.reason


def test_no_tokenizer_gets_xgrammar():
    assert choose_backend(None).backend == "xgrammar"


def test_a_tokenizer_llguidance_cannot_read_gets_xgrammar_and_the_engine_still_starts():
    """llguidance.hf takes fast tokenizers only: a slow one raised out of the choice."""
    choice = choose_backend(object())
    assert choice.backend == "xgrammar" and "llguidance cannot read" in choice.reason


@pytest.mark.parametrize(("requested", "no_whitespace", "backend"), [
    ("guidance", False, "guidance"), ("xgrammar", True, "xgrammar"), ("auto", True, "xgrammar"),
    ("auto", False, "auto"), ("outlines", False, "outlines")])
def test_a_named_backend_is_taken_as_named(requested, no_whitespace, backend):
    choice = named_backend(requested, no_whitespace)
    assert (choice.backend, choice.reason) == (backend, "as --structured-outputs-backend says")


def test_the_vllm_engine_shows_its_choice_in_its_options_before_and_after_load():
    """No vLLM here: the engine object alone, as the panel, /status, the doctor and copy as
    code read it."""
    from playground.doctor.sent import engine_backend
    from playground.engines.vllm_engine import VllmEngine
    from playground.run.export import target_for

    engine = VllmEngine("m", {"structured_outputs_config": {
        "backend": None, "disable_any_whitespace": True}})
    assert engine.info.options["backend_choice"] == pending().reason
    assert not engine.backend_named
    engine._use_backend(choose_backend(qwen_tokenizer()))
    assert engine.info.options["backend"] == "guidance"
    assert engine.engine_options["structured_outputs_config"]["backend"] == "guidance"
    assert engine.matcher_backend == "guidance"
    assert engine_backend(engine) == "vllm:guidance"
    assert engine.engine_options["structured_outputs_config"]["disable_additional_properties"]
    target = target_for(engine.info.as_dict())
    assert target.structured_outputs_config == {
        "backend": "guidance", "disable_any_whitespace": True,
        "disable_additional_properties": True}
    engine._use_backend(named_backend("xgrammar", True))  # vLLM refuses the option there
    assert "disable_additional_properties" not in engine.engine_options[
        "structured_outputs_config"]
    assert "disable_additional_properties" not in engine.info.options
    named = VllmEngine("m", {"structured_outputs_config": {
        "backend": "xgrammar", "disable_any_whitespace": False}})
    assert named.backend_named and named.info.options["backend"] == "xgrammar"
