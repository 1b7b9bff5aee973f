"""The Compare tab's grid: variants (mode, constraint, prompt template, settings) as
columns, inputs as rows, one constrained run per cell, with totals per column, a diff
against the first column and exports.

A cell is run as a click's constrained side is (`service.prepare` once per variant, then
`service.stream_run`): the same checks, limits, timing and verdicts. A grid holds no slot
of the model's queue group; its cells wait inside the engine beside other users' clicks,
a few at a time (`cells_at_once`), so a grid slows other sessions but never stops them.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import html
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playground.core import limits
from playground.core.settings import SamplingSettings
from playground.core.text_fields import check_text
from playground.engines.base import Engine
from playground.errors import InputError, LimitError
from playground.run import history, watchdog
from playground.run.batch import csv_text, jsonl_text
from playground.run.inputs import check_context
from playground.run.result import RunResult
from playground.run.service import (
    check_before_queue,
    mark_stopped,
    parse_settings,
    prepare,
    stream_run,
)

LETTERS = "ABCDEFGH"  # variant names; the limit (4 by default) is what counts
SLOT = "{input}"
COLUMNS = ["row", "input", "variant", "mode", "template", "prompt", "text", "verdict",
           "constraint_escaped", "errors", "output_tokens", "latency_s", "ttft_s",
           "finish_reason", "same_as_first"]
# Shown in a cell; the exports keep the whole output. 40 cells of 8,192 tokens redrawn
# after each finished cell sent megabytes to the page.
SHOWN_CHARS = 2_000
DIFF_WORDS = 2_000  # words compared per output (SequenceMatcher is quadratic at worst)
NOT_RUN = ("not run: the Compare tab runs the constrained side only (the free run is the "
           "mode's own tab)")


@dataclass
class Variant:
    mode: str
    constraint: str
    template: str = SLOT
    options: dict[str, Any] = field(default_factory=dict)

    def prompt(self, text: str) -> str:
        # replace, not str.format: a template holds JSON's braces as often as not.
        return self.template.replace(SLOT, text)


def letter(column: int) -> str:
    return LETTERS[column] if column < len(LETTERS) else f"#{column + 1}"


# ---- checks: what refuses a grid without the model ------------------------------------


def parse_inputs(text: Any = "", file: str | Path | None = None) -> list[str]:
    """Inputs one per line, or from a .txt (one per line) or .jsonl file (a JSON string,
    or {"input": ...} / {"prompt": ...}, per line); a file replaces the box's."""
    limit = limits.active()
    if file:
        path = Path(file)
        limit.require("max_batch_file_bytes", path.stat().st_size, path.name)
        try:
            content = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path.name}: not UTF-8 text (a byte at offset {exc.start} "
                             "cannot be read); save it as UTF-8") from None
        lines = [line for line in content.splitlines() if line.strip()]
        # Counted before any line is decoded: a 5 MB file of lines took 3.8 s to decode.
        limit.require("max_compare_inputs", len(lines), path.name)
        inputs = [jsonl_text(path.name, number, line, ("input", "prompt")) for number, line in
                  enumerate(lines, start=1)] if path.suffix == ".jsonl" else lines
        where = path.name
    else:
        if not isinstance(text or "", str):
            raise InputError("inputs: give the inputs as text, one per line")
        check_text("inputs", text or "", nul=True)
        limit.require("max_batch_file_bytes", len((text or "").encode()), "the inputs box")
        inputs, where = [line for line in (text or "").splitlines() if line.strip()], "inputs"
    if not inputs:
        raise InputError(f"{where}: give at least one input (one per line)")
    limit.require("max_compare_inputs", len(inputs), "the grid" if not file else where)
    for number, item in enumerate(inputs, start=1):
        check_text(f"input {number}", item)
        limit.require("max_compare_input_chars", len(item), f"input {number}")
    return inputs


def check_template(column: int, template: Any) -> str:
    name = f"variant {letter(column)}: template"
    if not isinstance(template, str):
        raise InputError(f"{name}: give the template as text")
    check_text(name, template)
    limits.active().require("max_prompt_chars", len(template), name)
    if SLOT not in template:
        raise InputError(f"{name}: put {SLOT} where each input goes (it has none)")
    return template


def check_grid(variants: list[Variant], inputs: list[str], first: int = 0) -> None:
    """Everything that refuses a grid without the model: its size, each variant (its
    template, settings and constraint, as a click's) and the work it asks for.
    `first`: the column of the first variant given (a re-run gives one)."""
    limit = limits.active()
    if not variants:
        raise InputError("variants: give at least one variant")
    limit.require("max_compare_variants", len(variants))
    limit.require("max_compare_inputs", len(inputs))
    limit.require("max_compare_cells", len(variants) * len(inputs),
                  f"the grid ({len(variants)} variants × {len(inputs)} inputs)")
    longest = max(inputs, key=len)
    for column, variant in enumerate(variants, start=first):
        check_template(column, variant.template)
        try:  # the longest input stands for all: a size limit is what it can break
            check_before_queue(variant.mode, variant.constraint, variant.prompt(longest),
                               variant.options)
        except InputError as exc:
            raise type(exc)(f"variant {letter(column)}: {exc}") from None
    check_work(variants, inputs)


def check_work(variants: list[Variant], inputs: list[str]) -> None:
    """Prompts at ~4 characters a token plus max tokens each, within --max-batch-tokens
    (one bound for a batch's and a grid's work)."""
    # A tool variant's tools go into every prompt too (the chat template renders them).
    work = sum((len(variant.prompt(text)) + len(variant.constraint) * (variant.mode == "tool"))
               // 4 + parse_settings(variant.options).max_tokens
               for variant in variants for text in inputs)
    limits.active().require("max_batch_tokens", work, "the grid (prompts plus max tokens "
                            "each, about 4 characters a token)")


# ---- the grid --------------------------------------------------------------------------


@dataclass
class Grid:
    variants: list[Variant]
    inputs: list[str]
    cells: list[list[RunResult | None]] = field(default_factory=list)  # [row][column]
    warnings: dict[int, list[str]] = field(default_factory=dict)
    wall_s: float = 0.0
    note: str | None = None  # why it ended early, if it did

    def __post_init__(self) -> None:
        if not self.cells:
            self.cells = [[None] * len(self.variants) for _ in self.inputs]

    def done(self, cells: list[tuple[int, int]] | None = None) -> int:
        """Finished cells: of `cells` ((row, column) pairs), or of the whole grid."""
        if cells is None:
            return sum(1 for row in self.cells for cell in row if _finished(cell))
        return sum(_finished(self.cells[row][column]) for row, column in cells)

    def totals(self, column: int) -> dict[str, Any]:
        """One column's counts, and means over its finished cells."""
        finished = [cell for row in self.cells if (cell := row[column]) is not None
                    and _finished(cell)]
        latencies = [cell.latency_s for cell in finished if cell.latency_s is not None]
        counts = {status: sum(cell.verdict == status for cell in finished) for status in
                  ("valid", "invalid", "truncated", "error", "stopped", "unjudged")}
        return {"cells": len(self.inputs), "finished": len(finished), **counts,
                "escaped": sum(cell.constraint_escaped for cell in finished),
                "not_run": len(self.inputs) - len(finished),
                "mean_latency_s": sum(latencies) / len(latencies) if latencies else None,
                "mean_tokens": (sum(cell.output_tokens for cell in finished) / len(finished)
                                if finished else None)}

    def rows(self) -> list[dict[str, Any]]:
        """One row per cell, row by row, as the exports write them."""
        out = []
        for row, text in enumerate(self.inputs):
            first = self.cells[row][0]
            for column, variant in enumerate(self.variants):
                cell = self.cells[row][column]
                data = cell.as_dict() if cell is not None else {}
                out.append({"row": row + 1, "input": text, "variant": letter(column),
                            "mode": variant.mode, "template": variant.template,
                            "prompt": variant.prompt(text),
                            **{key: data.get(key) for key in COLUMNS[6:-1]},
                            "same_as_first": (None if cell is None or first is None
                                              else cell.text == first.text)})
        return out


def _finished(cell: RunResult | None) -> bool:
    return cell is not None and cell.verdict != "running"


def cells_at_once(engine: Engine) -> int:
    """A grid's cells in the engine at once: one where it runs one sequence at a time;
    half the CPU model's batch (a click's two sides fit beside them); 8 on vLLM."""
    if not engine.concurrent:
        return 1
    batch = getattr(engine, "max_batch", None)
    return max(1, batch // 2) if batch else 8


def _past_limit() -> str:
    return (limits.active().message("batch_timeout_s", what="the grid")
            + "; the cells left were not run")


async def run_grid(engine: Engine, grid: Grid,
                   cells: list[tuple[int, int]] | None = None) -> AsyncIterator[Grid]:
    """Run `cells` ((row, column) pairs; default every one) of `grid`, in place; yield
    the grid as it starts and after each finished cell. A Stop (this generator closed)
    labels the cells in the engine "stopped" and leaves the others not run."""
    watchdog.watch()
    todo = cells if cells is not None else [(row, column) for row in range(len(grid.inputs))
                                            for column in range(len(grid.variants))]
    prepared: dict[int, tuple[Any, SamplingSettings]] = {}
    for column in sorted({column for _, column in todo}):
        variant = grid.variants[column]
        try:
            constraint, warnings, settings = await prepare(engine, variant.mode,
                                                           variant.constraint,
                                                           variant.options)
        except InputError as exc:
            raise type(exc)(f"variant {letter(column)}: {exc}") from None
        prepared[column], grid.warnings[column] = (constraint, settings), warnings
    check_work(grid.variants, grid.inputs)
    for row, column in todo:
        grid.cells[row][column] = None
    grid.note = None
    gate = asyncio.Semaphore(cells_at_once(engine))
    start = time.perf_counter()

    async def one(row: int, column: int) -> None:
        async with gate:
            constraint, settings = prepared[column]
            prompt = grid.variants[column].prompt(grid.inputs[row])
            try:
                await check_context(engine, prompt, settings)
            except LimitError as exc:  # this cell's prompt only: the others still run
                grid.cells[row][column] = RunResult(verdict="error", errors=[str(exc)],
                                                    finish_reason="error")
                return
            try:
                async for result in stream_run(engine, prompt, constraint, settings,
                                               constraint):
                    grid.cells[row][column] = result
            except asyncio.CancelledError:  # streaming or being judged: labelled either way
                cell = grid.cells[row][column]
                if cell is None:  # before its first chunk: still in the engine
                    grid.cells[row][column] = cell = RunResult()
                if grid.note is not None:  # stream_run labels it "stopped by user"
                    cell.errors = [error.replace("stopped by user", "the grid's time limit")
                                   for error in cell.errors]
                mark_stopped(cell, "stopped by user" if grid.note is None
                             else "the grid's time limit")
                raise

    yield grid
    tasks = [asyncio.create_task(one(row, column)) for row, column in todo]
    deadline = start + limits.active().batch_timeout_s
    try:
        for finished in asyncio.as_completed(
                tasks, timeout=max(0.0, deadline - time.perf_counter())):
            await finished
            grid.wall_s = time.perf_counter() - start
            yield grid
    except TimeoutError:  # the cells in the engine end "stopped", the others not run
        grid.note = _past_limit()
    finally:
        for task in tasks:
            task.cancel()
        # Every cell leaves the engine (labelled "stopped") before the grid is shown.
        await asyncio.gather(*tasks, return_exceptions=True)
        grid.wall_s = time.perf_counter() - start
    yield grid


async def run_grid_to_end(engine: Engine, grid: Grid,
                          cells: list[tuple[int, int]] | None = None) -> Grid:
    async for _ in run_grid(engine, grid, cells):
        pass
    return grid


# ---- the diff against the first column -------------------------------------------------

_WORDS = re.compile(r"\s+|[^\s\w]|\w+")


@functools.lru_cache(maxsize=512)
def diff_html(first: str, other: str) -> str:
    """`other` against `first`, word by word, as escaped HTML: <del> for what only the
    first has, <ins> for what only this one has."""
    if first == other:
        return '<span class="same">same as the first column</span>'
    a, b = _WORDS.findall(first), _WORDS.findall(other)
    cut = len(a) > DIFF_WORDS or len(b) > DIFF_WORDS
    a, b = a[:DIFF_WORDS], b[:DIFF_WORDS]
    parts = []
    # autojunk (words in over 1% of a long output are not matched on): without it two
    # outputs of 2,000 repeated words took 33 s on the event loop; with it, under 1 ms.
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b).get_opcodes():
        if op in ("delete", "replace"):
            parts.append(f"<del>{html.escape(''.join(a[i1:i2]))}</del>")
        if op in ("insert", "replace"):
            parts.append(f"<ins>{html.escape(''.join(b[j1:j2]))}</ins>")
        if op == "equal":
            parts.append(html.escape("".join(a[i1:i2])))
    more = f" <em>(first {DIFF_WORDS:,} words compared)</em>" if cut else ""
    return f'<span class="diff">{"".join(parts)}</span>{more}'


# ---- exports ---------------------------------------------------------------------------


def to_jsonl(grid: Grid) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in grid.rows())


def to_csv(grid: Grid) -> str:
    return csv_text(grid.rows(), COLUMNS)


def to_history(grid: Grid, engine_info: dict[str, Any] | None = None) -> str:
    """The grid's finished cells as a run file for the History tab (each cell a run of its
    variant's mode tab; loading it adds them to the history)."""
    runs: list[history.Run] = []
    free = RunResult(verdict="stopped", errors=[NOT_RUN]).as_dict()
    for row, text in enumerate(grid.inputs):
        for column, variant in enumerate(grid.variants):
            cell = grid.cells[row][column]
            if cell is None or not _finished(cell):
                continue
            # record: the numbers a history file refuses (inf, nan) are dropped, as a click's.
            update = {"mode": variant.mode, "engine": engine_info or {},
                      "warnings": grid.warnings.get(column, []),
                      "constrained": cell.as_dict(), "unconstrained": free}
            runs.append(history.record(update, variant.prompt(text), variant.constraint,
                                       parse_settings(variant.options), runs))
    return history.dumps(runs, "run")
