"""The app on the GPU machine: page served quickly, model loading behind it, and eight
concurrent gradio_client sessions batched by vLLM."""

import os
import re
import threading
import time
from pathlib import Path

import pytest

from playground.launch import launched_app
from playground.presets import load_presets

pytestmark = pytest.mark.gpu
MODEL = os.environ.get("GPU_MODEL", "Qwen/Qwen2.5-7B-Instruct")
OUT = Path(os.environ["OUT"]) if os.environ.get("OUT") else None


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    log_path = (OUT or tmp_path_factory.mktemp("gpu_app")) / "gpu_app.log"
    argv = ["--engine", "vllm", "--model", MODEL, "--disable-any-whitespace",
            "--gpu-memory-utilization", os.environ.get("GPU_MEMORY_UTILIZATION", "0.45")]
    if os.environ.get("GPU_MODEL"):
        argv += ["--load-format", "dummy"]
    # vLLM's stats line ("Running: N reqs") every second, so the batching test can read it.
    with launched_app(argv, log_path=log_path, env={"VLLM_LOG_STATS_INTERVAL": "1"}) as app:
        timings = {"page_served_s": app.wait_served(limit_s=120),
                   "model_ready_s": app.wait_ready(limit_s=400)}
        if OUT:
            (OUT / "gpu_app_start.json").write_text(str(timings))
        yield app.url, timings, log_path


def test_page_is_served_before_the_model_is_ready(app):
    _, timings, _ = app
    assert timings["page_served_s"] < timings["model_ready_s"]


def test_eight_concurrent_sessions(app):
    from gradio_client import Client

    url, _, log_path = app
    presets = list(load_presets().values())[:8]
    results: list = [None] * 8

    def session(index: int) -> None:
        preset = presets[index]
        client = Client(url, verbose=False)
        results[index] = client.predict(
            preset.mode, preset.constraint_text, preset.prompt,
            {**preset.settings.model_dump(), "max_tokens": 96}, api_name="/generate")

    start = time.perf_counter()
    threads = [threading.Thread(target=session, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    verdicts = [r["constrained"]["verdict"] for r in results]
    summed = sum(r[k]["latency_s"] for r in results for k in ("constrained", "unconstrained"))
    if OUT:
        (OUT / "gpu_sessions.json").write_text(str({"wall_s": wall, "sum_latency_s": summed,
                                                    "verdicts": verdicts}))
    assert all(v in {"valid", "truncated"} for v in verdicts), verdicts
    assert wall < summed / 4, (wall, summed)
    # vLLM's own stats log says how many requests ran together: batched, not one by one.
    time.sleep(1.5)  # the next stats line
    running = [int(n) for n in re.findall(r"Running: (\d+) reqs", log_path.read_text())]
    if OUT:
        (OUT / "gpu_running.txt").write_text(str(running))
    assert running and max(running) >= 2, running
