"""Integration tests with the real SmolLM2-135M on the CPU: every preset, every mode."""

import asyncio

import pytest

from playground.core.presets import load_presets
from playground.run.service import run_request

pytestmark = pytest.mark.slow
PRESETS = load_presets()


@pytest.mark.parametrize("preset", PRESETS.values(), ids=list(PRESETS))
def test_every_preset_constrained_output_is_valid_or_truncated(embedded_engine, preset):
    result = asyncio.run(run_request(embedded_engine, preset.mode, preset.constraint_text,
                                     preset.prompt, preset.settings.model_dump()))
    constrained, free = result["constrained"], result["unconstrained"]
    assert constrained["verdict"] in {"valid", "truncated"}, constrained
    assert free["verdict"] in {"valid", "invalid", "truncated"}, free
    for run in (constrained, free):
        assert run["output_tokens"] >= 1 and run["prompt_tokens"] > 0
        assert run["latency_s"] > 0 and run["ttft_s"] <= run["latency_s"]
    assert constrained["compile_s"] is not None and free["compile_s"] is None


@pytest.mark.parametrize("name", ["Sentiment", "Email address", "Iconic 90s car", "SQL SELECT"])
def test_the_four_classics_validate(embedded_engine, name):
    preset = PRESETS[name]
    result = asyncio.run(run_request(embedded_engine, preset.mode, preset.constraint_text,
                                     preset.prompt, preset.settings.model_dump()))
    assert result["constrained"]["verdict"] == "valid", result["constrained"]


def test_stop_string_is_kept_and_ends_generation(embedded_engine):
    result = asyncio.run(run_request(embedded_engine, "regex", r"[a-z]+\n[a-z]+", "Say hi",
                                     {"stop": ["\n"], "max_tokens": 16}))
    text = result["constrained"]["text"]
    assert text.endswith("\n") and text.count("\n") == 1, text


def test_max_tokens_cut_is_truncated(embedded_engine):
    result = asyncio.run(run_request(embedded_engine, "regex", "[a-z]+", "Write a long word",
                                     {"max_tokens": 2}))
    assert result["constrained"]["finish_reason"] == "length"
    assert result["constrained"]["verdict"] == "truncated"


def test_sampling_with_a_seed_is_repeatable(embedded_engine):
    options = {"temperature": 1.0, "top_p": 0.9, "seed": 7, "max_tokens": 12}
    runs = [asyncio.run(run_request(embedded_engine, "json", '{"type": "object"}',
                                    "A JSON object, please", options)) for _ in range(2)]
    assert runs[0]["constrained"]["text"] == runs[1]["constrained"]["text"]


def test_engine_rejects_a_constraint_xgrammar_cannot_compile(embedded_engine):
    from playground.errors import InputError

    with pytest.raises(InputError, match="xgrammar"):
        asyncio.run(run_request(embedded_engine, "regex", r"(a)\1", "p", {}))


@pytest.mark.parametrize("temperature, top_p, allowed", [
    (0.0, 1.0, {2}),          # greedy: the largest logit
    (1.0, 0.5, {2}),          # nucleus: token 2 alone holds more than half the mass
    (1.0, 0.95, {1, 2}),      # nucleus: tokens 2 and 1 together reach 0.95
])
def test_pick_greedy_and_nucleus(temperature, top_p, allowed):
    import torch

    from playground.engines.base import SamplingSettings
    from playground.engines.cpu_batch import pick as _pick

    logits = torch.log(torch.tensor([0.01, 0.29, 0.7]))
    settings = SamplingSettings(temperature=temperature, top_p=top_p)
    generator = torch.Generator().manual_seed(0)
    picked = {_pick(torch, logits, settings, generator) for _ in range(200)}
    assert picked == allowed


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("top_p", [0.1, 0.5, 0.9, 0.99])
def test_nucleus_keeps_the_smallest_most_probable_set_reaching_top_p(dtype, top_p):
    """On random logits (bf16-rounded ones tie often): the kept tokens are the most
    probable, their mass reaches top_p, and without the least probable of them it would
    not; the kept probabilities are the softmax's own, unchanged (a seed's draw stays)."""
    import torch

    from playground.engines.cpu_batch import nucleus as _nucleus

    generator = torch.Generator().manual_seed(0)
    for vocab in (50, 49152):
        for scale in (0.5, 3.0):
            logits = (torch.randn(vocab, generator=generator) * scale).to(getattr(torch, dtype))
            probs = torch.softmax(logits.float(), dim=-1)
            kept = _nucleus(probs, top_p) > 0
            assert kept.any()
            mass = float(probs[kept].double().sum())
            dropped = probs[~kept]
            assert not dropped.numel() or float(probs[kept].min()) >= float(dropped.max())
            assert mass >= top_p - 1e-5
            assert mass - float(probs[kept].min()) < top_p + 1e-5
            assert torch.equal(_nucleus(probs, top_p)[kept], probs[kept])


@pytest.mark.parametrize(("argv", "batch", "events"), [
    ([], 4, 2), (["--cpu-batch", "1"], 1, 1), (["--cpu-batch", "16"], 16, 8)])
def test_cpu_batch_sets_the_batch_and_the_clicks_the_page_runs_at_once(argv, batch, events):
    """Each page event runs a click's two sequences: as many run at once as the batch
    holds; the others wait in Gradio's queue, where the page shows their place."""
    from playground.engines.registry import create_engine, defaults
    from playground.web.status import engine_concurrency

    engine = create_engine(defaults(["--engine", "cpu", *argv]))
    assert engine.max_batch == batch and engine_concurrency(engine) == events
