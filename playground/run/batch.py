"""Many prompts under one constraint, run as one batch, with totals and exports."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playground.core import limits
from playground.core.text_fields import check_text
from playground.engines.base import Engine
from playground.errors import InputError
from playground.run import watchdog
from playground.run.result import RunResult, RunStatus
from playground.run.service import check_before_queue, parse_settings, prepare, stream_run

COLUMNS = ["index", "prompt", "text", "verdict", "constraint_escaped", "errors",
           "prompt_tokens", "output_tokens", "latency_s", "ttft_s", "tokens_per_s",
           "finish_reason"]

# The statuses the totals count, in the order exports have always listed them.
TOTALS: tuple[RunStatus, ...] = ("valid", "invalid", "truncated", "error", "stopped",
                                 "unjudged")


def parse_prompts(text: str = "", file: str | Path | None = None) -> list[str]:
    """Prompts one per line, or from a .txt (one per line) or .jsonl file ({"prompt": ...}
    or a JSON string per line). A file replaces the box's prompts: the box holds a
    preset's prompt from the start, which a 3-line file then ran as a 4th."""
    limit = limits.active()
    if not isinstance(text or "", str):
        raise InputError("batch: give the prompts as text, one per line")
    prompts: list[str] = []
    if not file:
        # Its size in UTF-8 bytes: a lone surrogate has none, so it is named first.
        check_text("the prompts box", text or "", nul=True)
        limit.require("max_batch_file_bytes", len((text or "").encode()), "the prompts box")
        prompts = [line for line in (text or "").splitlines() if line.strip()]
    else:
        path = Path(file)
        limit.require("max_batch_file_bytes", path.stat().st_size, f"{path.name}")
        try:
            content = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path.name}: not UTF-8 text (a byte at offset {exc.start} "
                             "cannot be read); save it as UTF-8") from None
        if path.suffix == ".jsonl":
            prompts += [jsonl_text(path.name, number, line, ("prompt",)) for number, line
                        in enumerate(content.splitlines(), start=1) if line.strip()]
        else:
            prompts += [line for line in content.splitlines() if line.strip()]
    if not prompts and file:
        raise InputError(f"{Path(file).name}: no prompts in the file (a file replaces the "
                         "box's prompts)")
    if not prompts:
        raise InputError("batch: give at least one prompt (one per line, or a file)")
    limit.require("max_batch_prompts", len(prompts))
    for number, prompt in enumerate(prompts, start=1):
        check_text(f"prompt {number}", prompt)
    longest = max(prompts, key=len)
    limit.require("max_prompt_chars", len(longest), f"prompt {prompts.index(longest) + 1}")
    return prompts


def check_work(prompts: list[str], max_tokens: int) -> None:
    """The tokens a batch may take (prompts at ~4 characters a token, plus max tokens
    each) within --max-batch-tokens: 1,000 prompts of 50 KB would be ~13 hours on a CPU."""
    work = sum(len(prompt) // 4 + max_tokens for prompt in prompts)
    limits.active().require("max_batch_tokens", work, "the batch (prompts plus max tokens "
                            "each, about 4 characters a token)")


def check_batch_before_queue(mode: Any, constraint_text: Any, prompts_text: Any,
                             file: str | Path | None, options: Any) -> None:
    """Everything that refuses a batch without the model (as `check_before_queue` for one
    request): its prompts, their number and work, its settings and its constraint."""
    try:
        prompts = parse_prompts(prompts_text, file)
    except OSError as exc:  # the upload went away: one line, as the run itself says it
        raise InputError(f"{Path(str(file)).name}: {exc.strerror or exc}") from None
    check_before_queue(mode, constraint_text, prompts[0], options)
    check_work(prompts, parse_settings(options).max_tokens)


@dataclass
class BatchResult:
    prompts: list[str]
    results: list[RunResult | None]
    wall_s: float = 0.0
    totals: dict[str, Any] = field(default_factory=dict)
    note: str | None = None  # why it ended early, if it did

    @property
    def done(self) -> int:
        return sum(1 for r in self.results if r is not None and r.verdict != "running")

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for index, (prompt, result) in enumerate(zip(self.prompts, self.results, strict=True)):
            data = result.as_dict() if result else {}
            rows.append({"index": index, "prompt": prompt, **{k: data.get(k) for k in COLUMNS[2:]}})
        return rows

    def summarize(self) -> dict[str, Any]:
        finished = [r for r in self.results if r is not None]
        tokens = sum(r.output_tokens for r in finished)
        counts = {status: sum(r.verdict == status for r in finished) for status in TOTALS}
        self.totals = {
            "prompts": len(self.prompts), "finished": len(finished), **counts,
            "constraint_escaped": sum(r.constraint_escaped for r in finished),
            # Outputs the constraint made the model spell oddly (run.tokenization).
            "odd_tokenization": sum(r.tokenization is not None and not r.tokenization.canonical
                                    for r in finished),
            "validity_rate": counts["valid"] / len(finished) if finished else None,
            "output_tokens": tokens, "wall_s": self.wall_s,
            "tokens_per_s": tokens / self.wall_s if self.wall_s else None,
            "note": self.note,
        }
        return self.totals


def _past_limit() -> str:
    return limits.active().message("batch_timeout_s") + "; the prompts left were not run"


async def run_batch(engine: Engine, mode: str, constraint_text: str, prompts: list[str],
                    options: dict[str, Any] | None = None) -> AsyncIterator[BatchResult]:
    """Yield the batch as it starts and after each finished prompt; the last one has its
    totals. Results fill in place as they stream, so a holder sees them (Stop does).

    A concurrent engine (vLLM) gets every prompt at once and batches them itself.
    """
    watchdog.watch()
    constraint, _, settings = await prepare(engine, mode, constraint_text, options)
    check_work(prompts, settings.max_tokens)
    batch = BatchResult(prompts, [None] * len(prompts))
    start = time.perf_counter()

    async def one(index: int) -> None:
        async for result in stream_run(engine, prompts[index], constraint, settings, constraint):
            batch.results[index] = result

    yield batch
    deadline = start + limits.active().batch_timeout_s
    try:
        if engine.concurrent:
            tasks = [asyncio.create_task(one(index)) for index in range(len(prompts))]
            try:
                for finished in asyncio.as_completed(
                        tasks, timeout=max(0.0, deadline - time.perf_counter())):
                    await finished
                    batch.wall_s = time.perf_counter() - start
                    yield batch
            except TimeoutError:  # the ones still running end "stopped", below
                batch.note = _past_limit()
            finally:
                for task in tasks:
                    task.cancel()
                # Stopped: every request leaves the engine (labelled "stopped") first.
                await asyncio.gather(*tasks, return_exceptions=True)
        else:
            for index in range(len(prompts)):
                if time.perf_counter() > deadline:
                    batch.note = _past_limit()
                    break
                await one(index)
                batch.wall_s = time.perf_counter() - start
                yield batch
    finally:  # a stopped batch keeps its totals, for whoever holds it (the Stop button)
        batch.wall_s = time.perf_counter() - start
        batch.summarize()
    yield batch


async def run_batch_to_end(engine: Engine, mode: str, constraint_text: str,
                           prompts: list[str], options: dict[str, Any] | None = None
                           ) -> BatchResult:
    updates = [update async for update in run_batch(engine, mode, constraint_text, prompts,
                                                    options)]
    return updates[-1]


def jsonl_text(name: str, number: int, line: str, keys: tuple[str, ...]) -> str:
    """The text of one line of an uploaded .jsonl: a JSON string, or an object with the
    first of `keys` it has (the batch's prompts, the grid's inputs)."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}: line {number}: not JSON: {exc.msg}") from None
    except RecursionError:
        raise InputError(f"{name}: line {number}: nested too deeply") from None
    if isinstance(item, dict):
        item = next((item[key] for key in keys if key in item), None)
    if not isinstance(item, str):
        raise InputError(f'{name}: line {number}: give a string or {{"{keys[0]}": "..."}}')
    return item


def to_jsonl(batch: BatchResult) -> str:
    return "".join(json.dumps(row) + "\n" for row in batch.rows())


def to_csv(batch: BatchResult) -> str:
    return csv_text(batch.rows(), COLUMNS)


def csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Export rows as CSV, a row's list of errors as one cell (the batch's and the grid's)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(value) for key, value in
                         {**row, "errors": "; ".join(row["errors"] or [])}.items()})
    return buffer.getvalue()


# What a spreadsheet reads as a formula at the start of a cell (OWASP's list): a prompt or
# an output such as =HYPERLINK(...) would run when the file is opened.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A text cell that a spreadsheet would run, kept as text (a leading ')."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value
