"""Validation and constraint building, bounded: never on the event loop, never unlimited.

`validate` (playground.judging.validation) decides a verdict; this module decides where it runs.
Work whose cost is linear in bounded input (a choice lookup, an RE2 match) runs in a
thread; everything a user's input can make slow without bound (an Earley parse of an
ambiguous grammar, Python `re` backtracking for a backreference, jsonschema on a big
schema, building a Lark parser, the matcher of a cut output) runs in a worker process
(playground.judging.workers) that is killed past its limit. A verdict past the validation time
limit is "unjudged", with the reason; a constraint past the compile limit is an input error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from playground.core import limits, linear_re
from playground.core.constraints import Choice, Constraint, Regex, from_text
from playground.core.text_fields import check_text
from playground.errors import (
    ConstraintError,
    InputError,
    LimitError,
    WorkerDied,
    WorkersBusy,
    WorkTimeout,
)
from playground.judging import workers
from playground.judging.validation import Verdict, validate

log = logging.getLogger(__name__)

# Cheap verdicts (a choice, a linear regex) run in threads of their own, off asyncio's
# default pool, which a new request's prompt encoding uses.
_JUDGING = ThreadPoolExecutor(max_workers=8, thread_name_prefix="judge")


def _in_thread(constraint: Constraint, finish_reason: str | None) -> bool:
    """Whether validating is cheap and linear, so a thread suffices (no process hop)."""
    if finish_reason == "length":  # the matcher compiles the constraint: a worker
        return False
    return isinstance(constraint, Choice) or (
        isinstance(constraint, Regex) and linear_re.unsupported(constraint.pattern) is None)


def judge_blocking(constraint: Constraint, text: str, finish_reason: str | None = "stop",
                   engine_error: str | None = None, backend: str = "xgrammar",
                   any_whitespace: bool = True) -> Verdict:
    """`validate` under the validation time limit, from sync code (the CLI, worker threads).

    Arguments as `validate`'s, which decides the verdict wherever it runs."""
    args = (constraint, text, finish_reason, engine_error, backend, any_whitespace)
    if _in_place(constraint, finish_reason, engine_error):
        return validate(*args)
    limit = limits.active()
    try:
        return workers.call(validate, *args, timeout=limit.validation_timeout_s,
                            setup=_setup(finish_reason))
    except (WorkersBusy, WorkTimeout, WorkerDied, RecursionError) as exc:
        return _unjudged(finish_reason, exc)


async def judge(constraint: Constraint, text: str, finish_reason: str | None = "stop",
                engine_error: str | None = None, backend: str = "xgrammar",
                any_whitespace: bool = True) -> Verdict:
    """`judge_blocking` from async code: the event loop only waits (a worker's pipe is
    read by the loop itself, see workers.acall)."""
    args = (constraint, text, finish_reason, engine_error, backend, any_whitespace)
    if _in_place(constraint, finish_reason, engine_error):
        return await asyncio.get_running_loop().run_in_executor(
            _JUDGING, partial(validate, *args))
    limit = limits.active()
    try:
        return await workers.acall(validate, *args, timeout=limit.validation_timeout_s,
                                   setup=_setup(finish_reason))
    except (WorkersBusy, WorkTimeout, WorkerDied, RecursionError) as exc:
        return _unjudged(finish_reason, exc)


def _in_place(constraint: Constraint, finish_reason: str | None,
              engine_error: str | None) -> bool:
    """No worker needed: an engine error (nothing to judge) or a cheap linear check."""
    return finish_reason == "error" or bool(engine_error) or _in_thread(constraint,
                                                                        finish_reason)


def _setup(finish_reason: str | None) -> Callable[[], None] | None:
    # A cut output is checked by the matcher: its imports are not part of the judging time.
    return _import_matchers if finish_reason == "length" else None


def warm_up() -> None:
    """Start every validation worker now, matchers imported: a server calls this at start,
    so no request pays for it (the first output cut at max tokens waited ~5 s for xgrammar's
    import on 2 cores, and the bench's first constrained throughput round ran at 0.23 of raw)."""
    from concurrent.futures import ThreadPoolExecutor

    def start(_: int) -> int:
        return workers.call(int, 0, timeout=60, setup=_import_matchers)

    with ThreadPoolExecutor(workers.MAX_WORKERS) as pool:
        list(pool.map(start, range(workers.MAX_WORKERS)))


def _import_matchers() -> None:
    import importlib.util

    for name in ("xgrammar", "llguidance"):
        if importlib.util.find_spec(name) is not None:
            __import__(name)


def _unjudged(finish_reason: str | None, exc: Exception) -> Verdict:
    if isinstance(exc, WorkTimeout):
        reason = limits.active().message("validation_timeout_s")
    elif isinstance(exc, WorkerDied):
        log.warning("validation worker lost: %s", exc)
        reason = "the validation worker ended (out of memory?)"
    elif isinstance(exc, RecursionError):
        reason = "the output is nested too deeply to check"
    else:
        reason = str(exc)
    cut = ["stopped at max tokens"] if finish_reason == "length" else []
    return Verdict("unjudged", [f"not judged: {reason}", *cut])


# ---- building constraints --------------------------------------------------------------


def check_sizes(mode: str, text: str) -> None:
    """The size limits a constraint's text must keep, checked before any parsing."""
    limit = limits.active()
    limit.require("max_constraint_chars", len(text), f"the {mode} constraint")
    check_text(f"{mode} constraint", text)
    if mode == "regex":
        limit.require("max_regex_chars", len(text))
    elif mode == "choice":
        limit.require("max_choices", sum(1 for line in text.splitlines() if line.strip()))
    elif mode in ("json", "tool"):  # the tools' schemas nest inside the tools document
        limit.require("max_json_depth", json_depth(text), "the schema's nesting")


def json_depth(text: str) -> int:
    """The deepest bracket nesting of JSON text (strings skipped), in one linear scan."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def build_constraint(mode: str, text: str) -> Constraint:
    """`constraints.from_text` within the size and compile limits; InputError otherwise.

    Choices and regexes (bounded by their size limits) are built in place; a JSON schema
    (jsonschema's check), a tool set (that check, per tool) and a Lark grammar (lark builds
    its parser) in a worker process.
    """
    if not isinstance(mode, str) or not isinstance(text, str):
        raise InputError("constraint: give the mode and the constraint as text")
    check_sizes(mode, text)
    try:
        if mode not in ("json", "grammar", "tool"):
            return from_text(mode, text)
        limit = limits.active()
        try:
            return workers.call(from_text, mode, text, timeout=limit.compile_timeout_s)
        except WorkersBusy as exc:
            raise LimitError(f"the server is busy: {exc}; try again") from None
        except WorkTimeout:
            raise LimitError(limit.message("compile_timeout_s", what=f"checking the {mode} "
                                           "constraint")) from None
        except WorkerDied:
            raise InputError(f"{mode}: checking the constraint ended its worker (too large?)"
                             ) from None
    except ConstraintError as exc:
        raise InputError(str(exc)) from None
    except RecursionError:
        raise InputError(f"{mode}: the constraint is nested too deeply") from None

