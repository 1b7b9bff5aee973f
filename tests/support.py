"""What several test modules share (fixtures stay in conftest.py): a free port, the app as a
process, the soak, and the GPU tests' model, engine flags and concurrent clicks.

Environment:
- $OUT: where results are appended (GPU tests: one file a name; soaks: soak.json);
- $PLAYGROUND_SOAK_S: how long a soak runs (short by default on the CPU, as CI runs it;
  tools/gpu/session.sh sets the long one);
- $SOAK_SESSIONS: the CPU soak's sessions (default 16);
- $GPU_MODEL: a folder with a model's config and tokenizer, loaded with dummy weights (the
  GPU machine's staged Qwen2.5-7B shape);
- $GPU_MEMORY_UTILIZATION: so two test runs can share one GPU.

Imported as `support` (pytest puts tests/ on sys.path): the soak's client processes import
it again by that name.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from playground.bench.launch import free_port

__all__ = ["MEMORY", "MODEL", "OUT", "ROOT", "concurrent_clicks", "cpu_s", "free_port",
           "gpu_args", "record", "record_soak", "rss_mb", "soak", "soak_s", "start_app",
           "streamed_lengths"]

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
MODEL = os.environ.get("GPU_MODEL", "Qwen/Qwen2.5-7B-Instruct")
MEMORY = os.environ.get("GPU_MEMORY_UTILIZATION", "0.45")
SOAK_ENV = "PLAYGROUND_SOAK_S"


def open_page(browser: Any, url: str, height: int, ready: str, timeout_ms: int) -> Any:
    """A page of the app in the test module's browser, once `ready` (a selector) shows."""
    page = browser.new_page(viewport={"width": 1500, "height": height})
    page.goto(url)
    page.wait_for_selector(ready, timeout=timeout_ms)
    return page


def soak_s(default: float) -> float:
    """Seconds a soak runs: $PLAYGROUND_SOAK_S, else this test's default."""
    return float(os.environ.get(SOAK_ENV) or default)


# ---- results ---------------------------------------------------------------------------


def record(name: str, data: Any) -> None:
    """A GPU test's result, appended to $OUT/name as a JSON line."""
    if OUT:
        with open(OUT / name, "a") as file:
            file.write(json.dumps(data) + "\n")


def record_soak(name: str, data: dict) -> None:
    """A soak's figures: printed (run with -s) and appended to $OUT/soak.json."""
    print(f"\n{name}: {json.dumps(data)}")
    if OUT:
        with open(OUT / "soak.json", "a") as file:
            file.write(json.dumps({name: data}) + "\n")


# ---- the app as a process --------------------------------------------------------------


def start_app(port: int, log_path: Path, args: tuple[str, ...] = ("--engine", "cpu"),
              timeout_s: float = 180) -> subprocess.Popen:
    """The app (`app.py`) as a process, once its model is ready. For tests that kill it or
    give it their own flags; the CPU app as it is otherwise is conftest's `cpu_app`."""
    log = open(log_path, "a")
    process = subprocess.Popen(
        [sys.executable, "app.py", *args, "--port", str(port)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "0"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the app did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
    from gradio_client import Client

    client = Client(url, verbose=False)
    while not client.predict(api_name="/status")["ready"]:
        assert process.poll() is None and time.monotonic() < deadline, "the model did not load"
        time.sleep(0.5)
    return process


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used, its own threads only."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- the soak --------------------------------------------------------------------------

# Sessions per client process: gradio_client costs ~100 ms of client CPU a call, and one
# Python process of 64 sessions measured its own GIL (on 2 cores, with a fake engine: 16
# requests/s, /status 4 s, the server at 23 % CPU), not the server.
SESSIONS_PER_CLIENT = 8


def _sessions(url: str, first: int, count: int, deadline_in_s: float,
              requests: list[tuple[str, str, str, dict]]
              ) -> tuple[list[float], Counter[str], list[str]]:
    """`count` gradio_client sessions calling /generate in a loop (one client process)."""
    from gradio_client import Client

    deadline = time.monotonic() + deadline_in_s
    failures: list[str] = []
    verdicts: Counter[str] = Counter()
    latencies: list[float] = []

    def session(number: int) -> None:
        time.sleep(0.05 * number)  # users arrive over a few seconds, not in one millisecond
        try:
            client = Client(url, verbose=False)
        except Exception as exc:
            failures.append(f"connecting: {type(exc).__name__}: {exc}")
            return
        turn = number
        while time.monotonic() < deadline:
            mode, constraint, prompt, options = requests[turn % len(requests)]
            turn += 1
            began = time.monotonic()
            try:
                result = client.predict(mode, constraint, prompt, options, api_name="/generate")
                verdict = result["constrained"]["verdict"]
                verdicts[verdict] += 1
                if verdict not in {"valid", "truncated"}:
                    failures.append(f"{mode}: constrained verdict {verdict}: "
                                    f"{result['constrained']['errors']}")
            except Exception as exc:  # every failure is counted, none stops the soak
                failures.append(f"{mode}: {type(exc).__name__}: {exc}")
            latencies.append(time.monotonic() - began)

    threads = [threading.Thread(target=session, args=(first + n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=deadline_in_s + 300)
    return latencies, verdicts, failures


def soak(url: str, pid: int, sessions: int, seconds: float,
         requests: list[tuple[str, str, str, dict]]) -> tuple[dict, list[str]]:
    """`sessions` gradio_client sessions calling /generate in a loop for `seconds`, from
    client processes of SESSIONS_PER_CLIENT each; the server's RSS and /status latency
    sampled every 5 s from this process, which does nothing else: (figures, failures).
    `event_loop` is the server's watchdog at the end, `stalls_during` the stalls it counted
    during the soak (the server may have served other tests before)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from gradio_client import Client

    stalls_before = Client(url, verbose=False).predict(api_name="/status")["event_loop"]["stalls"]
    status_s: list[float] = []
    rss: list[tuple[float, float]] = []
    start = time.monotonic()
    deadline = start + seconds
    cpu_start = cpu_s(pid)

    def watch() -> None:
        client = Client(url, verbose=False)
        while time.monotonic() < deadline:
            rss.append((time.monotonic() - start, rss_mb(pid)))
            began = time.monotonic()
            client.predict(api_name="/status")
            status_s.append(time.monotonic() - began)
            time.sleep(5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    groups = [(first, min(SESSIONS_PER_CLIENT, sessions - first))
              for first in range(0, sessions, SESSIONS_PER_CLIENT)]
    with ProcessPoolExecutor(len(groups), mp_context=multiprocessing.get_context("spawn")
                             ) as pool:
        parts = list(pool.map(_sessions, *zip(*[(url, first, count,
                                                 deadline - time.monotonic(), requests)
                                                for first, count in groups], strict=True)))
    watcher.join(timeout=60)
    loop = Client(url, verbose=False).predict(api_name="/status")["event_loop"]
    rss.append((time.monotonic() - start, rss_mb(pid)))
    wall = time.monotonic() - start
    latencies = [s for part in parts for s in part[0]]
    verdicts = sum((part[1] for part in parts), Counter())
    failures = [f for part in parts for f in part[2]]
    # Memory: from the end of the first quarter (caches and compiled grammars warm) to the end.
    warm = [mb for t, mb in rss if t >= seconds / 4] or [rss[-1][1]]
    figures = {
        "sessions": sessions, "client_processes": len(groups), "seconds": seconds,
        "wall_s": round(wall, 1),
        "requests": len(latencies), "requests_per_s": round(len(latencies) / wall, 2),
        "failures": len(failures), "verdicts": dict(verdicts),
        "latency_median_s": statistics.median(latencies),
        "latency_max_s": max(latencies), "status_max_s": max(status_s),
        "server_cpu_percent": round(100 * (cpu_s(pid) - cpu_start) / wall),
        "event_loop": loop, "stalls_during": loop["stalls"] - stalls_before,
        "rss_start_mb": rss[0][1], "rss_warm_mb": warm[0], "rss_end_mb": rss[-1][1],
        "rss_max_mb": max(mb for _, mb in rss),
    }
    return figures, failures


# ---- the GPU tests -------------------------------------------------------------------


def gpu_args(**overrides: Any):
    """The in-process vLLM engine's flags for the GPU tests."""
    from playground.engines.registry import defaults

    args = defaults()
    args.engine, args.model = "vllm", MODEL
    args.load_format = "dummy" if os.environ.get("GPU_MODEL") else "auto"
    # Random weights fill JSON with whitespace unless whitespace is restricted.
    args.disable_any_whitespace = True
    args.gpu_memory_utilization = float(MEMORY)
    for name, value in overrides.items():
        setattr(args, name, value)
    return args


def concurrent_clicks(loop: asyncio.AbstractEventLoop, engine: Any, count: int
                      ) -> tuple[list[dict[str, Any]], float, float]:
    """`count` preset clicks at once: (results, wall time, summed latency of every run)."""
    from playground.core.presets import load_presets
    from playground.judging import judge
    from playground.run.service import run_request

    presets = list(load_presets().values())
    chosen = [presets[i % len(presets)] for i in range(count)]

    async def one(preset):
        return await run_request(engine, preset.mode, preset.constraint_text, preset.prompt,
                                 {**preset.settings.model_dump(), "max_tokens": 64})

    async def together():
        return await asyncio.gather(*(one(p) for p in chosen))

    # Untimed first, as a server does at start (and the bench): the validation workers'
    # imports and each constraint's first compile are not batching. Measured alone on the
    # H100 without it: 8 clicks took 7.0 s of wall for 15.6 s of summed latency.
    judge.warm_up()
    loop.run_until_complete(together())
    start = time.perf_counter()
    results = loop.run_until_complete(together())
    wall = time.perf_counter() - start
    summed = sum(r[k]["latency_s"] for r in results for k in ("constrained", "unconstrained"))
    return results, wall, summed


def streamed_lengths(loop: asyncio.AbstractEventLoop, engine: Any) -> set[int]:
    """The constrained text's lengths over the updates of one 64-token regex run."""
    from playground.run.service import stream_request

    async def collect():
        return [u async for u in stream_request(
            engine, "regex", "[a-z]+( [a-z]+)*", "Write a long sentence.",
            {"max_tokens": 64})]

    return {len(u["constrained"]["text"]) for u in loop.run_until_complete(collect())}
