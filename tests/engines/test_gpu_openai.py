"""`--engine openai` against a real `vllm serve` on the GPU: every preset, 16 sessions, Stop.

The test starts vLLM's OpenAI-compatible server itself (in the background, ~2 min to
serve), with the staged model at $GPU_MODEL and dummy weights, whitespace restricted
server-wide (random weights would fill JSON with it) and dev mode on, so the engine
reads the server's backend. Results go to $OUT when it is set; the server's log too.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from support import MODEL, OUT, concurrent_clicks, record, streamed_lengths

from playground.core.presets import load_presets
from playground.engines.openai_engine import OpenAIEngine
from playground.run.service import run_request, stream_request

pytestmark = pytest.mark.gpu
PRESETS = load_presets()
PORT = int(os.environ.get("OPENAI_TEST_PORT", "8011"))
BACKEND = os.environ.get("SERVER_BACKEND", "guidance")
URL = f"http://127.0.0.1:{PORT}"


def server_command() -> list[str]:
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", MODEL,
            "--load-format", "dummy" if os.environ.get("GPU_MODEL") else "auto",
            "--port", str(PORT),
            "--gpu-memory-utilization", os.environ.get("GPU_MEMORY_UTILIZATION", "0.5"),
            "--max-model-len", "4096",
            "--structured-outputs-config",
            json.dumps({"backend": BACKEND, "disable_any_whitespace": True}),
            "--enable-per-request-metrics"]


@pytest.fixture(scope="module")
def server():
    log_path = (OUT or Path(tempfile.mkdtemp())) / "vllm_server.log"
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(server_command(), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True,
                                   env={**os.environ, "VLLM_SERVER_DEV_MODE": "1"})
    try:
        while True:
            try:
                urllib.request.urlopen(f"{URL}/v1/models", timeout=2)
                break
            except OSError:
                tail = log_path.read_text()[-3000:]
                assert process.poll() is None, f"vllm serve exited:\n{tail}"
                assert time.perf_counter() - start < 240, f"vllm serve not up in 240 s:\n{tail}"
                time.sleep(1)
        record("gpu_openai_server.jsonl", {"serving_after_s": time.perf_counter() - start,
                                           "command": server_command()})
        yield URL
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def engine(server):
    engine = OpenAIEngine(server)
    start = time.perf_counter()
    engine.load()
    record("gpu_openai_engine.jsonl", {"load_s": time.perf_counter() - start,
                                       "engine": engine.info.as_dict()})
    return engine


def test_the_engine_reads_the_server(engine):
    options = engine.info.options
    assert engine.model == MODEL and options["vllm_version"].startswith("0.26")
    assert options["structured_outputs_backend"] == f"{BACKEND} (read from the server)"
    assert options.get("disable_any_whitespace") is True and not engine.any_whitespace


@pytest.mark.parametrize("preset", PRESETS.values(), ids=list(PRESETS))
def test_every_preset_through_the_server(loop, engine, preset):
    result = loop.run_until_complete(run_request(
        engine, preset.mode, preset.constraint_text, preset.prompt,
        preset.settings.model_dump()))
    record("gpu_openai_presets.jsonl", {"preset": preset.name, **result})
    for side in ("constrained", "unconstrained"):
        assert result[side]["verdict"] != "error", result[side]
    assert result["constrained"]["output_tokens"] > 0
    assert "vllm_ttft_s" in result["constrained"]["engine_timings"]  # the server's own


def test_tokens_stream(loop, engine):
    assert len(streamed_lengths(loop, engine)) > 10


def test_sixteen_concurrent_sessions(loop, engine):
    results, wall, summed = concurrent_clicks(loop, engine, 16)
    record("gpu_openai_concurrency.jsonl", {
        "sessions": 16, "requests": 32, "wall_s": wall, "sum_latency_s": summed,
        "verdicts": [r["constrained"]["verdict"] for r in results]})
    assert all(r[k]["verdict"] != "error" for r in results
               for k in ("constrained", "unconstrained"))
    assert wall < summed / 4  # batched by the server, not one after another


def running_requests() -> float:
    text = urllib.request.urlopen(f"{URL}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:num_requests_running"))


def test_stop_aborts_the_request_on_the_server(loop, engine):
    async def start_then_stop():
        first = asyncio.Event()

        async def consume():
            async for _ in stream_request(engine, "regex", "[a-z ]+", "Write an essay.",
                                          {"max_tokens": 3000}):
                first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 60)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    loop.run_until_complete(start_then_stop())
    deadline = time.monotonic() + 10
    while running_requests() > 0:
        assert time.monotonic() < deadline, "the server still runs the stopped request"
        time.sleep(0.2)
