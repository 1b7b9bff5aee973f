"""vLLM on the GPU, in-process: every preset, streaming, batching, the batch runner.

Run on the GPU machine (see README): with $GPU_MODEL set, the model loads with
load_format="dummy" (real architecture and tokenizer, random weights). Results are also
written to $OUT when it is set.
"""

import asyncio
import time

import pytest
from support import concurrent_clicks, gpu_args, record, streamed_lengths

from playground.core.presets import load_presets
from playground.engines.registry import create_engine
from playground.run import batch
from playground.run.service import run_request

pytestmark = pytest.mark.gpu
PRESETS = load_presets()


@pytest.fixture(scope="module")
def engine(loop):
    engine = create_engine(gpu_args())
    start = time.perf_counter()
    engine.load()
    record("gpu_engine.jsonl", {"load_s": time.perf_counter() - start,
                                "engine": engine.info.as_dict()})
    yield engine
    engine.shutdown()
    loop.run_until_complete(asyncio.sleep(0.5))  # let vLLM's output task see the shutdown


@pytest.mark.parametrize("preset", PRESETS.values(), ids=list(PRESETS))
def test_every_preset_on_vllm(loop, engine, preset):
    result = loop.run_until_complete(run_request(
        engine, preset.mode, preset.constraint_text, preset.prompt,
        preset.settings.model_dump()))
    record("gpu_presets.jsonl", {"preset": preset.name, **result})
    assert result["constrained"]["verdict"] in {"valid", "truncated"}, result["constrained"]
    assert result["unconstrained"]["verdict"] != "error", result["unconstrained"]
    assert "vllm_ttft_s" in result["constrained"]["engine_timings"]


def test_tokens_stream(loop, engine):
    lengths = streamed_lengths(loop, engine)
    assert len(lengths) > 10, "the text should grow over many updates"


def test_eight_concurrent_clicks_are_batched(loop, engine):
    results, wall, summed = concurrent_clicks(loop, engine, 8)
    record("gpu_concurrency.jsonl", {"requests": 16, "wall_s": wall, "sum_latency_s": summed})
    assert all(r["constrained"]["verdict"] in {"valid", "truncated"} for r in results)
    # 16 requests in flight together: the wall time is far below their summed latency.
    assert wall < summed / 4


def test_batch_runner_on_vllm(loop, engine):
    prompts = [f"Give me a number between {i} and {i + 10}." for i in range(64)]

    result = loop.run_until_complete(batch.run_batch_to_end(
        engine, "regex", r"[0-9]{1,3}", prompts, {"max_tokens": 8}))
    record("gpu_batch.jsonl", result.totals)
    assert result.totals["finished"] == 64
    assert result.totals["valid"] + result.totals["truncated"] == 64
