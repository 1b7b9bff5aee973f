"""The vLLM adapter and vLLM's own request validation, on the CPU (no GPU needed)."""

import importlib.util

import pytest

from playground.backends.vllm import sampling_kwargs, structured_outputs_kwargs
from playground.core.constraints import Choice, JsonSchema, LarkGrammar, Regex
from playground.core.presets import load_presets
from playground.engines.base import SamplingSettings
from playground.engines.registry import create_engine, defaults

PRESETS = load_presets()
needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vllm is not installed")
SQL = PRESETS["SQL SELECT"].constraint_text


@pytest.mark.parametrize(
    ("constraint", "expected"),
    [
        (Choice(("yes", "no")), {"choice": ["yes", "no"]}),
        (Regex(r"\d+"), {"regex": r"\d+"}),
        (JsonSchema({"type": "object"}), {"json": {"type": "object"}}),
    ],
)
def test_structured_outputs_kwargs(constraint, expected):
    assert structured_outputs_kwargs(constraint) == expected


def test_lark_goes_to_vllm_as_ebnf():
    grammar = structured_outputs_kwargs(LarkGrammar(SQL))["grammar"]
    assert "::=" in grammar and "?start" not in grammar


def test_sampling_kwargs_keep_stop_strings_in_the_output():
    kwargs = sampling_kwargs(SamplingSettings(max_tokens=9, stop=["\n"], seed=3))
    assert kwargs == {"max_tokens": 9, "temperature": 0.0, "top_p": 1.0, "seed": 3,
                      "stop": ["\n"], "include_stop_str_in_output": True}


def test_engine_vllm_without_a_gpu_stops_with_a_clear_message(monkeypatch):
    monkeypatch.setattr("playground.engines.hardware.gpu_available", lambda: False)
    args = defaults()
    args.engine = "vllm"
    with pytest.raises(RuntimeError, match="needs an NVIDIA GPU"):
        create_engine(args)


@needs_vllm
@pytest.mark.parametrize("preset", PRESETS.values(), ids=list(PRESETS))
@pytest.mark.parametrize("backend", ["auto", "xgrammar", "guidance"])
def test_vllm_accepts_every_preset_after_conversion(preset, backend):
    from playground.backends.vllm import vllm_check

    assert vllm_check(preset.to_constraint(), backend) == (True, None)


@needs_vllm
def test_vllm_rejects_the_raw_lark_grammar_which_is_why_it_is_converted():
    from vllm import SamplingParams
    from vllm.config import StructuredOutputsConfig
    from vllm.sampling_params import StructuredOutputsParams

    params = SamplingParams(structured_outputs=StructuredOutputsParams(grammar=SQL))
    with pytest.raises(ValueError):
        params._validate_structured_outputs(
            type("ModelConfig", (), {"is_diffusion": False})(),
            StructuredOutputsConfig(backend="xgrammar"), object())


@needs_vllm
def test_check_command_reports_vllm_acceptance(capsys):
    import json

    from playground.cli import main

    assert main(["check", "--mode", "regex", "--regex", r"\d+", "--engine", "vllm"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["vllm_accepts"] is True and result["vllm_message"] is None


@pytest.mark.parametrize(
    ("grammar", "expected"),
    [
        ('?start: a\n?a: "x"', 'start: a\na: "x"'),
        ('  ?expr.2: "x"  // ?not: a rule', '  expr.2: "x"  // ?not: a rule'),
        ('start: "?a:"', 'start: "?a:"'),
    ],
)
def test_lark_for_guidance_drops_only_inline_markers(grammar, expected):
    from playground.backends.guidance import lark_for_guidance

    assert lark_for_guidance(grammar) == expected


@pytest.mark.parametrize(
    ("backend", "disable", "expected"),
    [("auto", False, "auto"), ("auto", True, "xgrammar"), ("guidance", True, "guidance"),
     ("outlines", False, "outlines")],
)
def test_effective_backend(backend, disable, expected):
    from playground.backends.vllm import effective_backend

    assert effective_backend(backend, disable) == expected


def test_outlines_without_whitespace_is_refused():
    from playground.backends.vllm import effective_backend

    with pytest.raises(ValueError, match="xgrammar and guidance"):
        effective_backend("outlines", True)


@needs_vllm
@pytest.mark.parametrize(("mode", "text", "backend", "accepted", "message"), [
    ("regex", r"\d+", "xgrammar", True, None),
    ("regex", r"\d+", "guidance", True, None),
    ("regex", r"(a)\1", "xgrammar", False, "Backreference is not supported"),
    ("regex", r"(a)\1", "guidance", False, "backreferences are not supported"),
    ("choice", "a\nb", "outlines", True, None),
])
def test_vllm_check_against_the_pinned_vllm(mode, text, backend, accepted, message):
    from playground.backends.vllm import vllm_check
    from playground.core.constraints import from_text

    found, said = vllm_check(from_text(mode, text), backend)
    assert found is accepted
    assert (said is None) if message is None else (message in said)


@needs_vllm
@pytest.mark.parametrize("breakage", ["missing method", "changed signature"])
def test_a_moved_vllm_api_is_an_internal_error_not_a_rejection(monkeypatch, breakage):
    from vllm import SamplingParams

    from playground.backends.vllm import vllm_check
    from playground.core.constraints import from_text
    from playground.errors import VllmIntegrationError

    if breakage == "missing method":
        monkeypatch.delattr(SamplingParams, "_validate_structured_outputs")
    else:
        monkeypatch.setattr(SamplingParams, "_validate_structured_outputs",
                            lambda self, model_config: None)
    with pytest.raises(VllmIntegrationError, match="internal error"):
        vllm_check(from_text("regex", r"\d+"), "xgrammar")


@pytest.mark.parametrize(("pattern", "ascii"), [
    (r"\d+", "[0-9]+"), (r"[\d.]+", "[[0-9].]+"), (r"\w+@\w+", "[0-9A-Za-z_]+@[0-9A-Za-z_]+"),
    (r"\s", r"[\t\n\f\r ]"), (r"\D", "[^0-9]"), (r"[^\d]", "[^[0-9]]"),
    (r"[]\d]", "[][0-9]]"), (r"[\s-x]", r"[[\t\n\f\r ]-x]"), (r"[^\D]", "[^[^0-9]]"),
    (r"\\d", r"\\d"), (r"\p{L}\.", r"\p{L}\."), ("[a-z]", "[a-z]")])
def test_guidance_gets_regexes_with_ascii_classes(pattern, ascii):
    """llguidance reads \\d, \\w and \\s as Unicode; the validator (RE2), xgrammar and
    JSON Schema's ECMA-262 as ASCII."""
    assert structured_outputs_kwargs(Regex(pattern), "guidance") == {"regex": ascii}
    assert structured_outputs_kwargs(Regex(pattern), "xgrammar") == {"regex": pattern}


@pytest.mark.parametrize(("pattern", "fits", "breaks"), [
    (r"[\s-x]", [" ", "-", "x"], ["A", "!"]),  # a bare "0-9-x" inside would be a range
    (r"[^\D]", ["5"], ["６"]), (r"[]\d]+", ["]3"], ["a"]), (r"\w+@\w+", ["a_1@b"], ["é@b"])])
def test_guidance_enforces_the_validators_classes(pattern, fits, breaks):
    from playground.backends.guidance import as_sent_to_guidance
    from playground.judging.matcher import Matcher

    matcher = Matcher.create(as_sent_to_guidance(Regex(pattern)), None, "guidance")
    assert all(matcher.accepts(text) for text in fits)
    assert not any(matcher.accepts(text) for text in breaks)


def test_guidance_gets_schema_patterns_with_ascii_classes_and_data_untouched():
    schema = {"properties": {"pattern": {"type": "string", "pattern": r"^\d$"}},
              "patternProperties": {r"^\w+$": {"pattern": r"\s"}},
              "const": {"pattern": r"\d"}, "enum": [{"pattern": r"\d"}]}
    sent = structured_outputs_kwargs(JsonSchema(schema), "guidance")["json"]
    assert sent["properties"]["pattern"]["pattern"] == "^[0-9]$"
    assert sent["patternProperties"] == {"^[0-9A-Za-z_]+$": {"pattern": r"[\t\n\f\r ]"}}
    assert sent["const"] == {"pattern": r"\d"} and sent["enum"] == [{"pattern": r"\d"}]
    # A property named like a keyword is a schema; patterns that meet in ASCII merge.
    named = structured_outputs_kwargs(JsonSchema({
        "properties": {"enum": {"pattern": r"^\d$"}},
        "patternProperties": {r"^\d$": {"type": "string"}, "^[0-9]$": {"minLength": 1}}}),
        "guidance")["json"]
    assert named["properties"]["enum"]["pattern"] == "^[0-9]$"
    assert named["patternProperties"] == {"^[0-9]$": {"allOf": [{"type": "string"},
                                                                {"minLength": 1}]}}


def test_closed_objects_is_vllms_disable_additional_properties():
    from playground.backends.guidance import closed_objects

    schema = {"type": "object", "properties": {"a": {"type": "object", "properties": {}},
                                               "b": {"additionalProperties": True,
                                                     "properties": {}}}}
    closed = closed_objects(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["a"]["additionalProperties"] is False
    assert closed["properties"]["b"]["additionalProperties"] is True
