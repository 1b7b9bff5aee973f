"""The app on the GPU machine: page served quickly, model loading behind it, and eight
concurrent gradio_client sessions batched by vLLM."""

import os
import threading
import time

import pytest
from support import MODEL, OUT

from playground.bench.launch import launched_app
from playground.core.presets import load_presets

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    log_path = (OUT or tmp_path_factory.mktemp("gpu_app")) / "gpu_app.log"
    argv = ["--engine", "vllm", "--model", MODEL, "--disable-any-whitespace",
            "--gpu-memory-utilization", os.environ.get("GPU_MEMORY_UTILIZATION", "0.45")]
    if os.environ.get("GPU_MODEL"):
        argv += ["--load-format", "dummy"]
    with launched_app(argv, log_path=log_path) as app:
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

    # How many model events the app runs at once, from /status while the sessions run.
    running: list[int] = []
    done = threading.Event()

    def watch() -> None:
        client = Client(url, verbose=False)
        while not done.is_set():
            queue = client.predict(api_name="/status")["queue"] or {}
            running.append(queue.get("running", 0))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    start = time.perf_counter()
    threads = [threading.Thread(target=session, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    done.set()
    watcher.join()
    verdicts = [r["constrained"]["verdict"] for r in results]
    summed = sum(r[k]["latency_s"] for r in results for k in ("constrained", "unconstrained"))
    if OUT:
        (OUT / "gpu_sessions.json").write_text(str({"wall_s": wall, "sum_latency_s": summed,
                                                    "verdicts": verdicts}))
    assert all(v in {"valid", "truncated"} for v in verdicts), verdicts
    assert wall < summed / 4, (wall, summed)  # overlapping inside the engine
    # In-process AsyncLLM logs no "Running: N reqs" line (vllm serve's loop asks for it),
    # so the app's own queue says how many clicks were in the engine together.
    if OUT:
        (OUT / "gpu_running.txt").write_text(str(running))
    assert max(running) >= 4, running
