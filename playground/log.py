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
import sys
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
