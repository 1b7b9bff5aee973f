"""The app on the GPU machine: page served quickly, model loading behind it, and eight
concurrent gradio_client sessions batched by vLLM."""

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from playground.presets import load_presets

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[1]
MODEL = os.environ.get("GPU_MODEL", "Qwen/Qwen2.5-7B-Instruct")
OUT = Path(os.environ["OUT"]) if os.environ.get("OUT") else None


@pytest.fixture(scope="module")
def app():
    log = open(OUT / "gpu_app.log" if OUT else os.devnull, "w")
    command = [sys.executable, "app.py", "--engine", "vllm", "--model", MODEL, "--port", "7899",
               "--disable-any-whitespace", "--gpu-memory-utilization", "0.45"]
    if os.environ.get("GPU_MODEL"):
        command += ["--load-format", "dummy"]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = "http://127.0.0.1:7899/"
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            assert process.poll() is None, "the app exited"
            assert time.perf_counter() - start < 120, "the page was not served in 120 s"
            time.sleep(0.1)
    page_served = time.perf_counter() - start
    from gradio_client import Client

    client = Client(url, verbose=False)
    while not client.predict(api_name="/status")["ready"]:
        assert process.poll() is None and time.perf_counter() - start < 400
        time.sleep(1)
    timings = {"page_served_s": page_served, "model_ready_s": time.perf_counter() - start}
    if OUT:
        (OUT / "gpu_app_start.json").write_text(str(timings))
    yield url, timings
    process.terminate()
    process.wait(timeout=60)
    log.close()


def test_page_is_served_before_the_model_is_ready(app):
    _, timings = app
    assert timings["page_served_s"] < timings["model_ready_s"]


def test_eight_concurrent_sessions(app):
    from gradio_client import Client

    url, _ = app
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
    if OUT:  # vLLM's own stats log says how many requests ran together
        running = [int(n) for n in re.findall(r"Running: (\d+) reqs",
                                              (OUT / "gpu_app.log").read_text())]
        (OUT / "gpu_running.txt").write_text(str(running))
