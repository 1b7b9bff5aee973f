"""The one `playground` logger: configured once by the CLI (every command, `serve` too).

Every module logs to `logging.getLogger(__name__)`, a child of `playground`. Real
failures are logged with their traceback (`log.exception`); input errors as one line (`log.info`);
prompts appear only with `--log-prompts`, since a shared demo server sees other
people's text. Everything goes to stderr, so the CLI's stdout carries only its JSON.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import threading
from typing import Any

ROOT = "playground"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

LOG_FLAGS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--log-level",), {"choices": LEVELS, "default": "INFO",
                        "help": "level of the playground log (on stderr)"}),
    (("--log-prompts",), {"action": "store_true",
                          "help": "write prompts into the log (off: only their length)"}),
]

_log_prompts = False


def add_flags(parser: argparse.ArgumentParser) -> None:
    for flags, options in LOG_FLAGS:
        parser.add_argument(*flags, **options)


def configure(level: str = "INFO", log_prompts: bool = False) -> logging.Logger:
    """Send the playground log to stderr at `level`; safe to call again (no second handler)."""
    global _log_prompts
    _log_prompts = log_prompts
    # vLLM logs to stdout by default, its engine-core process too (it inherits this).
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    root = logging.getLogger(ROOT)
    root.setLevel(level)
    if not any(isinstance(handler, _Stderr) for handler in root.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
    root.propagate = False
    return root


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (tests and the CLI swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def prompt(text: str) -> str:
    """A prompt as the log may show it: the text only when --log-prompts was given."""
    return repr(text) if _log_prompts else f"<{len(text)} characters>"


# What native libraries write straight to the process's stderr, past Python's logging, in
# every request (measured on a CPU server: 146 lines of RE2's "CoalesceWalker::ShortVisit
# called", xgrammar's C++ warnings 4-8 times a request, Triton notices): shown once each.
NATIVE_NOISE = re.compile(r"ShortVisit called|re2/|/project/cpp/|[Tt]riton")
_CLOCK = re.compile(r"^\[\d\d:\d\d:\d\d\] ")
_MOST_SEEN = 500


def native_noise_once() -> None:
    """From now on, native libraries' repeated stderr lines (NATIVE_NOISE) show once.

    Python keeps writing to the real stderr; the process's fd 2 (which C++ code and every
    child process write to) becomes a pipe that a thread reads line by line and forwards.
    For `serve` only: a server's log is read by people, one line per event."""
    if getattr(native_noise_once, "on", False):
        return
    native_noise_once.on = True  # type: ignore[attr-defined]
    real = os.dup(2)
    sys.stderr.flush()
    sys.stderr = os.fdopen(os.dup(real), "w", buffering=1, errors="backslashreplace")
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    threading.Thread(target=_forward, args=(read, real), name="native-stderr",
                     daemon=True).start()


def _forward(read: int, real: int) -> None:
    seen: set[str] = set()
    with os.fdopen(read, "rb") as lines:
        for line in lines:
            text = line.decode("utf-8", "replace")
            if NATIVE_NOISE.search(text):
                key = _CLOCK.sub("", text)
                if key in seen:
                    continue
                if len(seen) < _MOST_SEEN:
                    seen.add(key)
                line = line.rstrip(b"\n") + b"  (shown once; repeats hidden)\n"
            try:
                os.write(real, line)
            except OSError:
                return
