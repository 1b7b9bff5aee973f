"""llama.cpp as the CPU bench's reference point: its figures, and the path without it."""

import asyncio
import importlib.util
import json
import sys

import jsonschema
import pytest

from playground.bench import engine_bench
from playground.bench import llama_cpp_reference as reference
from playground.core.presets import load_presets
from playground.core.settings import SamplingSettings

HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None


@pytest.fixture
def no_llama_cpp(monkeypatch):
    """`import llama_cpp` fails, as where the extra is not installed."""
    monkeypatch.setitem(sys.modules, "llama_cpp", None)


def test_the_reference_uses_the_benchs_json_preset():
    assert reference.JSON_PRESET == engine_bench.MODES_PRESETS["json"]


def test_without_llama_cpp_it_says_so(no_llama_cpp, fake_engine, capsys):
    reason = reference.missing()
    assert reason and "not installed" in reason and "[llamacpp]" in reason
    assert reference.measure("Hi", {"type": "object"}) == (None, reason)
    logged = []
    found = asyncio.run(reference.section(fake_engine, "cpu", {}, 1, logged.append))
    assert found == {"skipped": reason} and logged == [f"llama.cpp reference: skipped, {reason}"]
    reference.print_section({"llama_cpp": found})
    assert capsys.readouterr().out.strip() == f"llama.cpp reference: skipped, {reason}"


def test_other_engines_get_no_section(fake_engine, capsys):
    assert asyncio.run(reference.section(fake_engine, "vllm", {}, 1, print)) is None
    reference.print_section({"llama_cpp": None})
    assert capsys.readouterr().out == ""


def test_the_section_prints_both_sides_and_the_ratio(capsys):
    theirs = {"tokens": 28, "ttft_s": 0.1, "tokens_per_s": 60.0}
    found = {"llama_cpp_python": "0.3.16", "n_threads": 2, "prompt_tokens": 53,
             "max_tokens": 64, "constrained": theirs, "free": {**theirs, "tokens_per_s": 100.0},
             "ours": {"dtype": "int8", "constrained": {"tokens_per_s": 54.0},
                      "free": {"tokens_per_s": 90.0}},
             "ratio": 0.9, "free_ratio": 0.9}
    reference.print_section({"llama_cpp": found})
    out = capsys.readouterr().out
    assert "llama.cpp reference (same GGUF, its own grammar)" in out
    assert "constrained        54.0       60.0  0.900" in out


def test_the_chat_text_without_a_tokenizer_is_chatml():
    text = reference.chat_text("Hi", SamplingSettings(system_prompt="Be brief."))
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                    "<|im_start|>assistant\n")


def test_a_failing_llama_cpp_process_says_why():
    found, reason = asyncio.run(reference._apart(no_such_argument=1))
    assert found is None and reason.startswith("the llama.cpp process failed: ")
    assert "no_such_argument" in reason


@pytest.mark.slow
@pytest.mark.skipif(not HAS_LLAMA_CPP, reason="llama-cpp-python (the llamacpp extra) is "
                                              "not installed")
def test_a_short_run_gives_sane_figures_and_valid_json():
    preset = load_presets()[reference.JSON_PRESET]
    # The preset's enum alone: a whole object in well under 16 tokens.
    schema = {"$defs": preset.constraint["$defs"], "type": "object",
              "properties": {"car_type": {"$ref": "#/$defs/CarType"}},
              "required": ["car_type"]}
    text = reference.chat_text(preset.prompt, SamplingSettings())
    found, reason = reference.measure(text, schema, max_tokens=16, reps=1)
    assert reason is None and found["prompt_tokens"] > 10
    for name in ("constrained", "free"):
        row = found[name]
        assert 2 <= row["tokens"] <= 16
        assert 0 < row["ttft_s"] < row["total_s"] < 30 and 1 < row["tokens_per_s"] < 10_000
    assert found["constrained"]["finish_reason"] == "stop"
    jsonschema.validate(json.loads(found["constrained"]["text"]), schema)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_LLAMA_CPP, reason="llama-cpp-python (the llamacpp extra) is "
                                              "not installed")
def test_the_bench_measures_llama_cpp_in_a_process_of_its_own():
    found, reason = asyncio.run(reference._apart(prompt_text="<|im_start|>user\nHi<|im_end|>\n",
                                                 schema={"type": "boolean"}, max_tokens=4,
                                                 reps=1))
    assert reason is None and found["constrained"]["text"].strip() in ("true", "false")
    assert found["free"]["tokens"] == 4
