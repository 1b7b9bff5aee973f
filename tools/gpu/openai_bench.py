"""`bench --engine openai` against a `vllm serve` this script starts and stops itself.

    source /opt/gpu-env.sh && python3 tools/gpu/openai_bench.py [bench flags, e.g. --quick]

The server runs the staged model ($GPU_MODEL, dummy weights) on port 8011 with the
backend in $SERVER_BACKEND (default xgrammar, the in-process default), whitespace
restricted server-wide, dev mode on (so the playground reads the backend) and per-request
metrics. The report goes to $OUT/bench_openai.json and .png (or /tmp), the server's log
beside it. The server takes ~2 min to serve; a --quick bench a few minutes more.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playground.cli import main

PORT = 8011
URL = f"http://127.0.0.1:{PORT}"


def start_server(log_path: Path) -> subprocess.Popen:
    backend = os.environ.get("SERVER_BACKEND", "xgrammar")
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
               "--model", os.environ["GPU_MODEL"], "--load-format", "dummy",
               "--port", str(PORT), "--gpu-memory-utilization", "0.5",
               "--max-model-len", "4096", "--enable-per-request-metrics",
               "--structured-outputs-config",
               json.dumps({"backend": backend, "disable_any_whitespace": True})]
    with open(log_path, "w") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True,
                                env={**os.environ, "VLLM_SERVER_DEV_MODE": "1"})


def wait_served(process: subprocess.Popen, log_path: Path, limit_s: float = 240) -> float:
    start = time.perf_counter()
    while True:
        try:
            urllib.request.urlopen(f"{URL}/v1/models", timeout=2)
            return time.perf_counter() - start
        except OSError:
            if process.poll() is not None or time.perf_counter() - start > limit_s:
                sys.exit(f"vllm serve did not serve:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


if __name__ == "__main__":
    out = Path(os.environ.get("OUT") or "/tmp")
    log_path = out / "vllm_server.log"
    server = start_server(log_path)
    try:
        print(f"vllm serve answering after {wait_served(server, log_path):.0f} s",
              file=sys.stderr, flush=True)
        code = main(["bench", "--engine", "openai", "--base-url", URL, *sys.argv[1:],
                     "--json", str(out / "bench_openai.json"),
                     "--plot", str(out / "bench_openai.png")])
    finally:
        stop(server)
    sys.exit(code)
