"""vLLM's engine core ends with the app (GPU machine): SIGTERM while the engine core loads
and once it is ready, and SIGKILL of the app, after which the engine core must notice by
itself (playground.engines.vllm_engine.guard_engine_core). After each, no process of the
app (VLLM::EngineCore included) is left, and the GPU's memory is back where it was.

Each start asks for more than half the GPU: an engine core left holding its memory would
make the next start fail, as it did ("Free memory on device ... less than desired GPU
memory utilization"). With $GPU_MODEL set the model loads with dummy weights.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support import LEFT_S, MODEL, OUT, ServedApp, record

pytestmark = pytest.mark.gpu
MEMORY = os.environ.get("GPU_SHUTDOWN_MEMORY_UTILIZATION", "0.6")
# Memory the GPU's driver may still count a moment after the processes ended.
FREED_WITHIN_S = 15.0
SLACK_MIB = 1024


def _argv() -> tuple[str, ...]:
    argv = ["--engine", "vllm", "--model", MODEL, "--disable-any-whitespace",
            "--gpu-memory-utilization", MEMORY]
    if os.environ.get("GPU_MODEL"):
        argv += ["--load-format", "dummy"]
    return tuple(argv)


def _used_mib() -> int:
    """Memory in use on the GPU (the first one: the app uses one)."""
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used",
                          "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return int(out.split()[0])


def _compute_pids() -> set[int]:
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid",
                          "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return {int(word) for word in out.split() if word.isdigit()}


def _engine_cores(app: ServedApp) -> list:
    cores = []
    for proc in app.family():
        try:
            if "EngineCore" in proc.name() + " ".join(proc.cmdline()):
                cores.append(proc)
        except Exception:  # ended while looked at
            pass
    return cores


def _wait(condition, limit_s: float, what: str, app: ServedApp) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline or app.process.poll() is not None:
            pytest.fail(f"{what} did not happen within {limit_s:.0f} s:\n"
                        f"{app.log_path.read_text()[-3000:]}")
        time.sleep(0.5)


def _stop_and_check(app: ServedApp, sig: signal.Signals, baseline_mib: int, phase: str) -> None:
    cores = _engine_cores(app)
    assert cores, "no vLLM engine core process found"
    pids = {proc.pid for proc in app.family()}
    held_mib = _used_mib()
    took = app.signal_and_wait(sig)  # fails if any process of the app, the core too, is left
    start = time.monotonic()
    while (used := _used_mib()) > baseline_mib + SLACK_MIB or _compute_pids() & pids:
        assert time.monotonic() - start < FREED_WITHIN_S, (
            f"{used} MiB still in use {FREED_WITHIN_S:.0f} s after every process of the app "
            f"ended (before its start: {baseline_mib} MiB)")
        time.sleep(0.5)
    record("gpu_shutdown.jsonl", {"phase": phase, "signal": sig.name,
                                  "processes_gone_s": round(took, 1),
                                  "memory_freed_s": round(time.monotonic() - start, 1),
                                  "held_mib": held_mib, "baseline_mib": baseline_mib,
                                  "left_limit_s": LEFT_S})


@pytest.fixture
def app(tmp_path: Path):
    log_path = (OUT or tmp_path) / f"gpu_shutdown_{time.strftime('%H%M%S')}.log"
    baseline = _used_mib()
    launched = ServedApp(log_path, _argv())
    try:
        yield launched, baseline
    finally:
        launched.kill_everything()


def test_sigterm_while_the_engine_core_loads(app):
    app, baseline = app
    app.wait_served(limit_s=180)
    # Once the engine core holds GPU memory (weights, then the KV cache), not yet ready.
    _wait(lambda: _engine_cores(app) and _used_mib() > baseline + 2 * SLACK_MIB, 300,
          "the engine core taking GPU memory", app)
    assert app.status()["health"] == "loading"
    _stop_and_check(app, signal.SIGTERM, baseline, "loading")


def test_sigterm_once_ready(app):
    app, baseline = app
    app.wait_served(limit_s=180)
    app.wait_ready(limit_s=400)  # also: the memory of the test before was given back
    _stop_and_check(app, signal.SIGTERM, baseline, "ready")


def test_sigkill_of_the_app_ends_its_engine_core(app):
    app, baseline = app
    app.wait_served(limit_s=180)
    app.wait_ready(limit_s=400)
    _stop_and_check(app, signal.SIGKILL, baseline, "ready")
