"""Every size and time limit of the playground in one place, with its flag and its message.

One shared server must never be stalled by one user's input, so everything a request may
make the process do is bounded here. Each limit is a field of `Limits`; its command-line
flag is the field name with dashes (`max_prompt_chars` -> `--max-prompt-chars`), and a
request past it gets one line naming what is wrong, the limit and the flag to raise it.

Imports nothing of the playground but its errors: constraints, judging, run and the page
all read it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields, replace
from typing import Any

from playground.errors import InputError, LimitError


def _limit(default: float, what: str, unit: str) -> Any:
    return field(default=default, metadata={"what": what, "unit": unit})


@dataclass(frozen=True)
class Limits:
    # Sizes of one request. Measured on the 2-core CPU machine before these limits: a
    # 1,000,010-character prompt never answered (300 s, 7.3 GB); a 1 MB regex took 115 s
    # to compile, 100,000 choices 91 s, a 50,000-value enum 15 s.
    max_prompt_chars: int = _limit(50_000, "the prompt", "characters")
    max_system_prompt_chars: int = _limit(20_000, "the system prompt", "characters")
    max_constraint_chars: int = _limit(100_000, "the constraint", "characters")
    max_regex_chars: int = _limit(4_000, "the regex", "characters")
    max_choices: int = _limit(2_000, "the choice list", "choices")
    max_json_depth: int = _limit(64, "the JSON nesting", "levels")
    max_stop_strings: int = _limit(16, "the stop list", "strings")
    # A share link's token (run/share.py) travels in the page's URL, which uvicorn takes up
    # to ~16 KB; a tab with a preset's constraint compresses to well under 2,000.
    max_share_chars: int = _limit(8_000, "the share link", "characters")
    # The railroad diagram of a regex or grammar (doctor/railroad.py), drawn on every edit
    # and sent to the page: boxes and branches drawn, nesting, and the SVG's size.
    max_diagram_nodes: int = _limit(1_500, "the diagram", "boxes and branches")
    max_diagram_depth: int = _limit(60, "the diagram's nesting", "levels")
    max_diagram_bytes: int = _limit(1_000_000, "the diagram's SVG", "bytes")
    # Batches: the file, the prompts, and the work they ask for (prompt + max tokens each).
    max_batch_file_bytes: int = _limit(5_000_000, "the batch file", "bytes")
    max_batch_prompts: int = _limit(1_000, "the batch", "prompts")
    max_batch_tokens: int = _limit(200_000, "the batch's total work", "tokens")
    # The Compare tab's grid (run/compare.py): variants as columns, inputs as rows. A grid
    # holds no model slot (its cells queue in the engine beside other users' clicks), so
    # these bound its work: 40 cells of 64 tokens take ~2 minutes on the 2-core CPU model.
    max_compare_variants: int = _limit(4, "the grid", "variants")
    max_compare_inputs: int = _limit(20, "the grid", "inputs")
    max_compare_cells: int = _limit(40, "the grid", "cells")
    max_compare_input_chars: int = _limit(10_000, "the input", "characters")
    # Compiled grammars kept for reuse (xgrammar's cache in the CPU engine); 2,000 choices
    # take ~0.5 MB, a JSON schema with maxLength 10^8 ~5.6 MB. Before: never freed.
    compile_cache_bytes: int = _limit(256_000_000, "the compiled-grammar cache", "bytes")
    # History: runs kept per browser session, and the size of a history file loaded back.
    max_history_runs: int = _limit(50, "the history", "runs")
    max_history_file_bytes: int = _limit(20_000_000, "the history file", "bytes")
    # Time. Past these a request stops (its partial output labelled), a verdict or a
    # compilation is given up as "unjudged" / an error naming the limit.
    request_timeout_s: float = _limit(300.0, "one request", "seconds")
    # A batch holds a model slot to its end (the CPU model has one): past this the prompts
    # not started are left "not run", so one user's batch never holds the model for long.
    batch_timeout_s: float = _limit(900.0, "one batch", "seconds")
    validation_timeout_s: float = _limit(5.0, "validation", "seconds")
    compile_timeout_s: float = _limit(30.0, "compiling the constraint", "seconds")
    diagram_timeout_s: float = _limit(5.0, "drawing the diagram", "seconds")
    # A vLLM server (--engine openai): how long to wait for a connection, and for its
    # next streamed chunk (the first one waits for the queue, the compile and prefill).
    server_connect_timeout_s: float = _limit(10.0, "connecting to the vLLM server",
                                             "seconds")
    server_stream_timeout_s: float = _limit(
        60.0, "waiting for the vLLM server's next streamed chunk", "seconds")

    @staticmethod
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    def require(self, name: str, value: float, what: str | None = None) -> None:
        """Raise LimitError when `value` is past the limit `name`."""
        if value > getattr(self, name):
            raise LimitError(self.message(name, value, what))

    def message(self, name: str, value: float | None = None, what: str | None = None) -> str:
        """'the prompt has 1,000,010 characters; the limit is 50,000 (raise it with
        --max-prompt-chars)' or, for a time limit, 'validation took over 5 s (...)'."""
        meta = next(f.metadata for f in fields(self) if f.name == name)
        what, unit, limit = what or meta["what"], meta["unit"], getattr(self, name)
        if unit == "seconds":
            text = f"{what} took longer than {limit:g} s"
        elif value is None:
            text = f"{what} is over the limit of {_n(limit)} {unit}"
        else:
            text = f"{what} has {_n(value)} {unit}; the limit is {_n(limit)}"
        return f"{text} (raise it with {self.flag(name)})"

    @classmethod
    def from_args(cls, args: argparse.Namespace | None) -> Limits:
        """The limits the flags set; defaults for flags the command does not have."""
        given = {f.name: getattr(args, f.name) for f in fields(cls)
                 if args is not None and getattr(args, f.name, None) is not None}
        return replace(cls(), **given)


def _n(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


# Argparse flags, one per limit (added to the engine flags of run/serve/bench, and to check).
LIMIT_FLAGS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    ((Limits.flag(f.name),), {
        "type": type(f.default), "default": None, "metavar": "N",
        "help": f"limit on {f.metadata['what']}, in {f.metadata['unit']} "
                f"(default {_n(f.default)})"})
    for f in fields(Limits)
]

_active = Limits()


def active() -> Limits:
    """The limits this process runs under (set once at start from the flags)."""
    return _active


def configure(limits: Limits) -> Limits:
    global _active
    _active = limits
    return limits


# ---- serving: the queue, access (serve only; read by playground.web.app) ----------------------
# The upload limit is max_batch_file_bytes above (Gradio's max_file_size), so one flag
# bounds a batch file however it arrives.
DEFAULT_QUEUE_SIZE = 100
AUTH_ENV = "PLAYGROUND_AUTH"

SERVE_FLAGS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--queue-size",), {
        "type": int, "default": DEFAULT_QUEUE_SIZE, "metavar": "N",
        "help": "model requests that may wait for the engine; past it a user is told the "
                f"queue is full (default {DEFAULT_QUEUE_SIZE})"}),
    (("--concurrency",), {
        "type": int, "default": None, "metavar": "N",
        "help": "model requests run at once; others wait in the queue and see their place "
                "(default: 1 on the CPU model, 64 with vLLM)"}),
    (("--auth",), {
        "default": None, "metavar": "USER:PASSWORD",
        "help": f"ask for this login (or set {AUTH_ENV}); needed to serve beyond this machine"}),
]


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """'user:password' -> (user, password); None for no auth. Raises InputError."""
    if not value:
        return None
    user, colon, password = value.partition(":")
    if not colon or not user or not password:
        raise InputError(f"--auth / {AUTH_ENV}: give USER:PASSWORD, both non-empty")
    return user, password
