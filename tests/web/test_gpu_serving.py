"""The app on vLLM under load and after its engine core dies (GPU machine).

64 gradio_client sessions for $PLAYGROUND_SOAK_S seconds (default 120): no failure, server
memory flat. Then vLLM's engine core process is killed: /status reports the engine failed (with
the reason, no restart), /generate answers with a one-line error, the page keeps serving.
With $GPU_MODEL set the model loads with dummy weights, as in test_gpu_app.py.
"""

import os
import signal
import time

import pytest
from support import MODEL, OUT, free_port, record_soak, soak, soak_s, start_app

pytestmark = pytest.mark.gpu
SECONDS = soak_s(120)
REQUESTS = [
    ("choice", "Positive\nNegative", "Classify: the demo never froze.", {"max_tokens": 8}),
    ("regex", "[0-9]{1,3}", "How many legs has a spider?", {"max_tokens": 8}),
    ("json", '{"type": "object", "properties": {"ok": {"type": "boolean"}}, '
             '"required": ["ok"]}', "Is water wet? Answer in JSON.", {"max_tokens": 32}),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    args = ["--engine", "vllm", "--model", MODEL, "--disable-any-whitespace",
            "--gpu-memory-utilization", os.environ.get("GPU_MEMORY_UTILIZATION", "0.45")]
    if os.environ.get("GPU_MODEL"):
        args += ["--load-format", "dummy"]
    log = (OUT or tmp_path_factory.mktemp("gpu")) / "gpu_serving.log"
    port = free_port()
    process = start_app(port, log, tuple(args), timeout_s=600)
    yield f"http://127.0.0.1:{port}/", process, log
    process.terminate()
    process.wait(timeout=60)


def test_sixty_four_sessions_all_succeed_with_memory_flat(app):
    url, process, _ = app
    figures, failures = soak(url, process.pid, 64, SECONDS, REQUESTS)
    record_soak("gpu_soak", figures)
    assert not failures, failures[:5]
    assert figures["rss_end_mb"] - figures["rss_warm_mb"] < 200, figures
    assert figures["status_max_s"] < 5.0
    assert figures["event_loop"]["longest_stall_s"] < 1.0, figures


def test_a_killed_engine_core_is_reported_and_not_restarted(app):
    import psutil
    from gradio_client import Client

    url, process, _ = app
    client = Client(url, verbose=False)
    cores = [child for child in psutil.Process(process.pid).children(recursive=True)
             if "EngineCore" in child.name() + " ".join(child.cmdline())]
    assert cores, "no vLLM engine core process found"
    os.kill(cores[0].pid, signal.SIGKILL)
    start = time.monotonic()
    while (status := client.predict(api_name="/status"))["health"] != "failed":
        assert time.monotonic() - start < 60, status
        time.sleep(0.5)
    record_soak("gpu_engine_death", {"reported_after_s": time.monotonic() - start,
                                     "failure": status["failure"]})
    assert "killed by SIGKILL" in status["failure"]
    assert not status["ready"] and process.poll() is None  # the app keeps serving
    with pytest.raises(Exception, match="engine died: .*restart the app"):
        client.predict("choice", "yes\nno", "Is the sky blue?", {}, api_name="/generate")
