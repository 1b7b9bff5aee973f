"""Launch `playground serve` as a child process and wait for its page and its model.

One helper for everything that starts the app from outside: the bench's startup figures
and the app tests (CPU and GPU).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LaunchedApp:
    url: str
    process: subprocess.Popen
    started: float  # time.perf_counter() at launch
    log_path: Path | None = None  # the app's output, quoted when it fails

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _check_alive(self, what: str, limit_s: float) -> None:
        if self.process.poll() is not None:
            self._fail(f"the app exited (code {self.process.returncode}) before {what}")
        if self.elapsed() > limit_s:
            self._fail(f"{what} took over {limit_s:.0f} s")

    def _fail(self, message: str) -> None:
        if self.log_path is not None and self.log_path.exists():
            tail = self.log_path.read_text(errors="replace").splitlines()[-40:]
            message += "; the app's output ends:\n" + "\n".join(tail)
        raise RuntimeError(message)

    def wait_served(self, limit_s: float = 120) -> float:
        """Seconds from launch to the page answering."""
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=2).close()
                return self.elapsed()
            except OSError:
                self._check_alive("the page was served", limit_s)
                time.sleep(0.05)

    def wait_ready(self, limit_s: float = 600) -> float:
        """Seconds from launch to the model ready, read from the app's /status API."""
        from gradio_client import Client

        client = Client(self.url, verbose=False)
        while not (status := client.predict(api_name="/status"))["ready"]:
            if status.get("error"):
                raise RuntimeError(f"the model did not load: {status['error']}")
            self._check_alive("the model was ready", limit_s)
            time.sleep(0.5)
        return self.elapsed()

    def stop(self, limit_s: float = 60) -> None:
        # The whole group: vLLM's engine core is a child that holds the GPU's memory.
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=limit_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@contextmanager
def launched_app(engine_argv: list[str], port: int | None = None,
                 output: IO[Any] | int = subprocess.DEVNULL,
                 env: dict[str, str] | None = None,
                 log_path: Path | None = None) -> Iterator[LaunchedApp]:
    """`python -m playground serve` with these engine flags (and extra environment), stopped
    on exit. With `log_path` its output goes there and a failure to start quotes it."""
    port = port or free_port()
    command = [sys.executable, "-m", "playground", "serve", "--port", str(port), *engine_argv]
    with contextlib.ExitStack() as stack:
        if log_path is not None:
            output = stack.enter_context(open(log_path, "w"))
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True,
                                   env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "0",
                                        **(env or {})})
        app = LaunchedApp(f"http://127.0.0.1:{port}/", process, start, log_path)
        try:
            yield app
        finally:
            app.stop()


# Debian's Chromium: a browser download by Playwright never works on these machines.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium through Playwright, closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
