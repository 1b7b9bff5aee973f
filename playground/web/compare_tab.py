"""The Compare tab: variants as columns, inputs as rows (run/compare.py holds the grid);
its handlers (plain functions, which tests call directly), the grid's HTML and the
layout.

Each variant is VARIANT_FIELDS values on the page, in this order: mode, constraint,
template, then the seven sampling controls (web/controls.py); handlers take them flat.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

import gradio as gr

from playground.core import limits
from playground.core.constraints import MODE_LABELS, MODES, Mode
from playground.core.presets import Preset
from playground.core.property_order import parse_order, reorder_properties
from playground.core.settings import SamplingSettings
from playground.engines.base import Engine
from playground.errors import EngineNotReady, InputError
from playground.run import compare, downloads
from playground.run.compare import Grid, Variant
from playground.web.controls import (
    PROGRESS,
    controls_from_settings,
    options_from_controls,
    refusal,
    sampling_controls,
)
from playground.web.inflight import Flight, InFlight
from playground.web.markdown_safe import plain

log = logging.getLogger(__name__)

COLUMNS_SHOWN = 4  # variant columns laid out; limits.max_compare_variants may allow fewer
VARIANT_FIELDS = 10  # mode, constraint, template, seven sampling controls
# One grid at a time on the server: its cells already run several at once in the engine
# (compare.cells_at_once); a second grid waits here with its place shown.
COMPARE_QUEUE = "compare"
CSS = """
table.compare-grid {border-collapse:collapse;width:100%;font-size:0.88em;table-layout:fixed}
table.compare-grid th, table.compare-grid td {border:1px solid #ddd;padding:4px 6px;
  vertical-align:top;text-align:left;overflow-wrap:anywhere}
table.compare-grid pre {white-space:pre-wrap;margin:2px 0;max-height:12em;overflow:auto}
table.compare-grid tfoot td {background:#f8fafc}
table.compare-grid del {background:#fee2e2;color:#991b1b}
table.compare-grid ins {background:#dcfce7;color:#166534;text-decoration:none}
table.compare-grid .same {color:#6b7280;font-style:italic}
table.compare-grid .cell-meta, table.compare-grid .cell-diff {color:#4b5563;font-size:0.9em}
"""

# ---- handlers: plain functions ---------------------------------------------------------


def variants_from_values(count: Any, values: Sequence[Any]) -> list[Variant]:
    """The first `count` variants of the page's flat values."""
    try:
        number = int(count)
    except (TypeError, ValueError, OverflowError):
        raise InputError("variants: give the number of variants (1 to 4)") from None
    limits.active().require("max_compare_variants", number)
    if number < 1:
        raise InputError("variants: give at least one variant")
    if len(values) < number * VARIANT_FIELDS:
        raise InputError(f"variants: {number} variants need {number * VARIANT_FIELDS} "
                         f"values, not {len(values)}")
    variants = []
    for column in range(number):
        mode, constraint, template, *controls = values[column * VARIANT_FIELDS:
                                                        (column + 1) * VARIANT_FIELDS]
        try:
            options = options_from_controls(*controls)
        except InputError as exc:
            raise InputError(f"variant {compare.letter(column)}: {exc}") from None
        variants.append(Variant(mode, constraint, template, options))
    return variants


def check_compare(count: Any, inputs_text: Any, file: Any, *values: Any) -> None:
    """Everything that refuses a grid before it waits in the queue."""
    try:
        inputs = compare.parse_inputs(inputs_text, file)
    except OSError as exc:  # the upload went away
        raise InputError(f"{Path(str(file)).name}: {exc.strerror or exc}") from None
    compare.check_grid(variants_from_values(count, values), inputs)


def validate_compare(count: Any, inputs_text: Any, file: Any, *values: Any) -> list[Any]:
    """The Run grid validator: the error goes on the variant's constraint box it names,
    else on the inputs."""
    def where(message: str) -> int:
        for column in range(COLUMNS_SHOWN):
            if message.startswith(f"variant {compare.letter(column)}:"):
                field = 2 if "template" in message.split(":", 2)[1] else 1
                return 3 + column * VARIANT_FIELDS + field
        if message.startswith("variants") or " variants; " in message:
            return 0
        return 2 if file else 1

    return refusal(lambda: check_compare(count, inputs_text, file, *values),
                   3 + len(values), where)


def _bad(message: str) -> str:
    return f'<span class="bad">{plain(message)}</span>'


async def _stream(engine: Engine, grid: Grid, cells: list[tuple[int, int]] | None,
                  flight: Flight, what: str) -> AsyncIterator[tuple[Any, ...]]:
    """(status, grid HTML, files, grid) while `cells` of `grid` run; files at the end."""
    if not engine.ready:
        yield ("Waiting for the model to finish loading …", gr.skip(), gr.skip(), gr.skip())
    total = len(cells) if cells is not None else len(grid.inputs) * len(grid.variants)
    flight.batch = grid
    async with aclosing(compare.run_grid(engine, grid, cells)) as updates:
        async for update in updates:
            yield (f"{what}: {update.done(cells)} of {total} cells done, "
                   f"{update.wall_s:.1f} s",
                   grid_html(update), gr.skip(), gr.skip())
    note = f" · {plain(grid.note)}" if grid.note else ""
    yield (f"Done: {what}, {total} cells in {grid.wall_s:.1f} s{note}", grid_html(grid),
           export(grid, engine), grid)


async def _guarded(updates: AsyncIterator[tuple[Any, ...]], flight: Flight
                   ) -> AsyncIterator[tuple[Any, ...]]:
    """The updates, or one line saying why there are none (the page keeps serving)."""
    try:
        async with aclosing(updates):
            async for update in updates:
                yield update
    except (InputError, EngineNotReady, OSError) as exc:
        log.info("compare refused: %s", exc)
        yield (_bad(str(exc)), gr.skip(), gr.skip(), gr.skip())
    except Exception as exc:
        log.exception("a compare grid failed")
        yield (_bad(f"{type(exc).__name__}: {exc}"), gr.skip(), gr.skip(), gr.skip())
    finally:
        flight.done.set()


async def compare_click(engine: Engine, count: Any, inputs_text: Any, file: Any,
                        *values: Any, flight: Flight | None = None
                        ) -> AsyncIterator[tuple[Any, ...]]:
    """Run grid: stream (status, grid HTML, download files, the grid to keep)."""
    flight = flight or Flight()
    flight.begin()

    async def run() -> AsyncIterator[tuple[Any, ...]]:
        # Off the loop: a file is read and decoded, each variant's constraint checked.
        inputs = await asyncio.to_thread(compare.parse_inputs, inputs_text, file)
        variants = variants_from_values(count, values)
        await asyncio.to_thread(compare.check_grid, variants, inputs)
        grid = Grid(variants, inputs)
        async for update in _stream(engine, grid, None, flight, "grid"):
            yield update

    async for update in _guarded(run(), flight):
        yield update


def rerun_target(grid: Grid | None, column: Any, row: Any, values: Sequence[Any]
                 ) -> tuple[int, int, Variant]:
    """(column index, row number or 0 for the whole column, the variant as edited), or
    InputError: what a re-run is refused for, before the queue and in the run."""
    if grid is None:
        raise InputError("re-run: run a grid first")
    index = compare.LETTERS.find(str(column or "").strip().upper()[:1] or "?")
    if not 0 <= index < len(grid.variants):
        raise InputError(f"re-run: the grid has variants A to "
                         f"{compare.letter(len(grid.variants) - 1)}")
    try:
        number = int(row or 0)
    except (TypeError, ValueError, OverflowError):
        raise InputError("re-run: give a row number (0: the whole column)") from None
    if not 0 <= number <= len(grid.inputs):
        raise InputError(f"re-run: the grid has rows 1 to {len(grid.inputs)} "
                         "(0: the whole column)")
    variant = variants_from_values(index + 1, values)[index]
    compare.check_grid([variant], grid.inputs, first=index)
    return index, number, variant


def validate_rerun(grid: Grid | None, column: Any, row: Any, count: Any,
                   *values: Any) -> list[Any]:
    """The Re-run validator (inputs grid, column, row, count, *values)."""
    def where(message: str) -> int:
        if message.startswith("re-run"):
            return 2 if "row" in message else 1
        index = max(0, compare.LETTERS.find(str(column or "A").strip().upper()[:1]))
        parts = message.split(":")
        field = 2 if len(parts) > 1 and "template" in parts[1] else 1
        return 4 + index * VARIANT_FIELDS + field

    def check() -> None:
        rerun_target(grid, column, row, values)

    return refusal(check, 4 + len(values), where)


async def rerun_click(engine: Engine, grid: Grid | None, column: Any, row: Any, count: Any,
                      *values: Any, flight: Flight | None = None
                      ) -> AsyncIterator[tuple[Any, ...]]:
    """Re-run one column (row 0 or empty) or one cell of the last grid, with the column's
    variant as the form holds it now (edit a variant, re-run its column)."""
    flight = flight or Flight()
    flight.begin()

    async def run() -> AsyncIterator[tuple[Any, ...]]:
        index, number, variant = await asyncio.to_thread(rerun_target, grid, column, row,
                                                         values)
        assert grid is not None  # rerun_target refused a missing one
        before = grid.variants[index]
        if number and variant != before:  # its other cells would be credited to the edit
            number, changed = 0, " (its variant was edited: every cell again)"
        else:
            changed = ""
        grid.variants[index] = variant
        rows = [number - 1] if number else list(range(len(grid.inputs)))
        what = (f"cell {compare.letter(index)}{number}" if number
                else f"column {compare.letter(index)}{changed}")
        try:
            async for update in _stream(engine, grid, [(r, index) for r in rows], flight,
                                        what):
                yield update
        except InputError:  # refused before any cell ran: the grid keeps what made it
            grid.variants[index] = before
            raise

    async for update in _guarded(run(), flight):
        yield update


async def compare_stop_click(flight: Flight | None) -> tuple[Any, ...]:
    """Stop: end the grid, then show it with its stopped cells labelled, and its files."""
    if flight is not None:
        flight.stop()
    if flight is None or flight.batch is None or not await flight.ended():
        return (gr.skip(),) * 4
    grid: Grid = flight.batch
    stopped = sum(cell is not None and cell.verdict == "stopped"
                  for row in grid.cells for cell in row)
    return (f'<span class="warn">Stopped by user</span>: {grid.done() - stopped} cells '
            f"finished, {stopped} stopped, {grid.wall_s:.1f} s", grid_html(grid),
            export(grid), grid)


def export(grid: Grid, engine: Engine | None = None) -> list[str]:
    info = engine.info.as_dict() if engine is not None else {}
    return downloads.save({"compare.jsonl": compare.to_jsonl(grid),
                           "compare.csv": compare.to_csv(grid),
                           "compare-history.json": compare.to_history(grid, info)})


def start_from(mode: Any, inputs_text: str, *tab_values: Any) -> list[Any]:
    """A variant from a mode tab's state (its constraint and settings; its prompt becomes
    the template where it holds {input}, else the first input of an empty box):
    [mode, constraint, template, *controls, inputs box]."""
    if mode not in MODES:
        return [gr.skip()] * (VARIANT_FIELDS + 1)
    width = 2 + len(controls_from_settings(SamplingSettings()))
    start = list(MODES).index(mode) * width
    prompt, constraint, *controls = tab_values[start:start + width]
    has_slot = compare.SLOT in (prompt or "")
    template = prompt if has_slot else compare.SLOT
    inputs = prompt if not has_slot and prompt and not (inputs_text or "").strip() \
        else gr.skip()
    return [mode, constraint, template, *controls, inputs]


def reorder_click(count: Any, source: Any, order_text: Any, *values: Any) -> list[Any]:
    """A new variant after the others: `source` with its schema's properties in the
    order typed (empty: reversed). [count, *every variant's values, message]."""
    skip = [gr.skip()] * (1 + COLUMNS_SHOWN * VARIANT_FIELDS)
    try:
        number = int(count)
        index = compare.LETTERS.find(str(source or "A").strip().upper()[:1])
        if not 0 <= index < number:
            raise InputError(f"property order: variant {source} is not in the grid")
        if number >= min(COLUMNS_SHOWN, limits.active().max_compare_variants):
            raise InputError(f"property order: the grid has {number} variants already, "
                             "the most it can have; lower the number of another first")
        mode, constraint = values[index * VARIANT_FIELDS:index * VARIANT_FIELDS + 2]
        if mode != "json":
            raise InputError(f"property order: variant {compare.letter(index)} is not a "
                             "JSON Schema")
        reordered = reorder_properties(constraint, parse_order(str(order_text or "")))
    except (InputError, ValueError, TypeError) as exc:
        return [*skip, _bad(str(exc))]
    copied = list(values[index * VARIANT_FIELDS:(index + 1) * VARIANT_FIELDS])
    copied[1] = reordered
    out: list[Any] = [number + 1]
    for column in range(COLUMNS_SHOWN):
        out += copied if column == number else [gr.skip()] * VARIANT_FIELDS
    return [*out, f"Variant {compare.letter(number)}: variant {compare.letter(index)} "
            "with its properties reordered."]


def shown_columns(count: Any) -> list[Any]:
    try:
        number = int(count)
    except (TypeError, ValueError, OverflowError):
        number = 1
    return [gr.Column(visible=column < number) for column in range(COLUMNS_SHOWN)]


# ---- the grid as HTML ------------------------------------------------------------------


def grid_html(grid: Grid) -> str:
    """The grid: a header per variant, a row per input, totals per column at the foot."""
    head = "".join(f"<th>{compare.letter(column)} <small>{html.escape(variant.mode)} · "
                   f"{html.escape(_short(variant.template))}</small></th>"
                   for column, variant in enumerate(grid.variants))
    body = []
    for row, text in enumerate(grid.inputs):
        cells = "".join(f"<td>{_cell(grid, row, column)}</td>"
                        for column in range(len(grid.variants)))
        body.append(f"<tr><td>{row + 1}</td><td><pre>{html.escape(_short(text, 300))}</pre>"
                    f"</td>{cells}</tr>")
    feet = "".join(f"<td>{_totals(grid.totals(column))}</td>"
                   for column in range(len(grid.variants)))
    width = f"{85 // max(1, len(grid.variants))}%"
    cols = "".join(f'<col style="width:{width}">' for _ in grid.variants)
    return (f'<table class="compare-grid"><colgroup><col style="width:3%">'
            f'<col style="width:12%">{cols}</colgroup><thead><tr><th>#</th><th>input</th>'
            f"{head}</tr></thead><tbody>{''.join(body)}</tbody><tfoot><tr><td></td>"
            f"<td>totals</td>{feet}</tr></tfoot></table>")


def _cell(grid: Grid, row: int, column: int) -> str:
    cell = grid.cells[row][column]
    if cell is None:
        return '<span class="badge running">not run</span>'
    status = html.escape(cell.verdict)
    escaped = (' <span class="badge invalid">escaped</span>' if cell.constraint_escaped
               else "")
    latency = "–" if cell.latency_s is None else f"{cell.latency_s:.2f} s"
    meta = f"{cell.output_tokens} tokens · {latency}"
    errors = "".join(f"<div><small>{html.escape(error[:300])}</small></div>"
                     for error in cell.errors[:3])
    first = grid.cells[row][0]
    diff = ""
    if column and first is not None and cell.verdict != "running":
        diff = f'<div class="cell-diff">vs A: {compare.diff_html(first.text, cell.text)}</div>'
    return (f'<span class="badge {status}">{status}</span>{escaped} '
            f'<span class="cell-meta">{meta}</span>'
            f"<pre>{html.escape(_short(cell.text, compare.SHOWN_CHARS, flat=False))}</pre>"
            f"{errors}{diff}")


def _totals(totals: Mapping[str, Any]) -> str:
    parts = [f"{totals[key]} {key}" for key in ("valid", "invalid", "truncated")]
    parts.append(f"{totals['escaped']} escaped")
    parts += [f"{totals[key]} {key.replace('_', ' ')}" for key in
              ("error", "stopped", "unjudged", "not_run") if totals[key]]
    latency, tokens = totals["mean_latency_s"], totals["mean_tokens"]
    means = (f"mean {'–' if latency is None else f'{latency:.2f} s'} · "
             f"{'–' if tokens is None else f'{tokens:.1f}'} tokens")
    return f"<b>{' · '.join(parts)}</b><br><small>{means}</small>"


def _short(text: str, limit: int = 60, flat: bool = True) -> str:
    if flat:
        text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ---- layout ----------------------------------------------------------------------------


# Long on purpose (~90 lines): the tab's layout in page order, then its event wiring; no
# logic (the handlers above are plain functions).
def compare_tab(engine: Engine, presets: dict[str, Preset], flights: InFlight,
                fields: Mapping[Mode, Sequence[gr.components.Component]]) -> None:
    """`fields[mode]`: that mode tab's prompt, editor and seven controls, first."""
    example = next(iter(presets.values()), None)
    mode0 = example.mode if example else "choice"
    with gr.Tab("Compare", id="compare", elem_id="tab-compare"):
        gr.Markdown("Up to four variants (a mode, a constraint, a prompt template with "
                    "`{input}`, sampling) as columns, each input a row; each cell is one "
                    "constrained run. Start a variant from a mode tab, then edit it "
                    "(docs/compare.md says how the totals count).")
        count = gr.Radio([1, 2, 3, 4], value=2, label="Variants", elem_id="compare-count")
        columns, every = [], []
        with gr.Row():
            for column in range(COLUMNS_SHOWN):
                name = compare.letter(column)
                with gr.Column(visible=column < 2, min_width=220) as box:
                    gr.Markdown(f"### Variant {name}")
                    with gr.Row():
                        tab = gr.Dropdown([(MODE_LABELS[m], m) for m in MODES], value=mode0,
                                          label="Start from the tab", scale=3,
                                          elem_id=f"compare-from-{name}")
                        take = gr.Button("Copy", size="sm", scale=1,
                                         elem_id=f"compare-take-{name}")
                    mode = gr.Dropdown(list(MODES), value=mode0, label="Mode",
                                       elem_id=f"compare-mode-{name}")
                    editor = gr.Code(value=example.constraint_text if example else "",
                                     language=None, label="Constraint", lines=6,
                                     elem_id=f"compare-constraint-{name}")
                    template = gr.Textbox(compare.SLOT, label="Prompt template ({input})",
                                          lines=2, elem_id=f"compare-template-{name}")
                    controls = sampling_controls(example.settings if example
                                                 else SamplingSettings())
                columns.append(box)
                every.append([mode, editor, template, *controls, tab, take])
        with gr.Row():
            inputs = gr.Textbox(label="Inputs, one per line (each fills {input})", lines=5,
                                value=example.prompt if example else "",
                                elem_id="compare-inputs", scale=3)
            upload = gr.File(label="…or a .txt / .jsonl file of inputs", type="filepath",
                             file_types=[".txt", ".jsonl"], height=120, scale=1,
                             elem_id="compare-file")
        with gr.Accordion("Property order: a variant with the schema's properties "
                          "reordered", open=False):
            with gr.Row():
                source = gr.Dropdown(list(compare.LETTERS[:COLUMNS_SHOWN]), value="A",
                                     label="From variant", elem_id="compare-order-from")
                order = gr.Textbox(label="Order (names, comma-separated; empty: reversed)",
                                   elem_id="compare-order")
                reorder = gr.Button("Add the reordered variant", elem_id="compare-reorder")
            order_message = gr.Markdown(elem_id="compare-order-message")
        with gr.Row():
            run = gr.Button("Run grid", variant="primary", elem_id="compare-run")
            stop = gr.Button("Stop", variant="stop", elem_id="compare-stop")
            rerun_column = gr.Dropdown(list(compare.LETTERS[:COLUMNS_SHOWN]), value="A",
                                       label="Re-run variant", elem_id="compare-rerun-column")
            rerun_row = gr.Number(0, precision=0, minimum=0, label="row (0: whole column)",
                                  elem_id="compare-rerun-row")
            rerun = gr.Button("Re-run", elem_id="compare-rerun")
        status = gr.Markdown(elem_id="compare-status")
        table = gr.HTML(elem_id="compare-grid")
        files = gr.File(label="Download (JSONL, CSV, a run file for the History tab)",
                        file_count="multiple", elem_id="compare-files")
        grid = gr.State(None)
    values = [component for parts in every for component in parts[:VARIANT_FIELDS]]
    tab_fields = [component for mode in MODES for component in fields[mode][:9]]
    count.change(shown_columns, count, columns, api_name=False, queue=False)
    for parts in every:
        parts[-1].click(start_from, [parts[-2], inputs, *tab_fields],
                        [*parts[:VARIANT_FIELDS], inputs], api_name=False, queue=False)
    reorder.click(reorder_click, [count, source, order, *values],
                  [count, *values, order_message], api_name=False, queue=False)

    async def on_run(request: gr.Request, *given: Any) -> AsyncIterator[tuple[Any, ...]]:
        async for update in flights.updates(
                request.session_hash, "compare",
                lambda flight: compare_click(engine, *given, flight=flight)):
            yield update

    async def on_rerun(request: gr.Request, *given: Any) -> AsyncIterator[tuple[Any, ...]]:
        async for update in flights.updates(
                request.session_hash, "compare",
                lambda flight: rerun_click(engine, *given, flight=flight)):
            yield update

    async def on_stop(request: gr.Request) -> tuple[Any, ...]:
        return await compare_stop_click(flights.get(request.session_hash, "compare"))

    outputs = [status, table, files, grid]
    shared = {"api_name": False, "concurrency_id": COMPARE_QUEUE, "concurrency_limit": 1,
              "show_progress": PROGRESS, "show_progress_on": status}
    run_event = run.click(on_run, [count, inputs, upload, *values], outputs,
                          validator=validate_compare, **shared)
    rerun_event = rerun.click(on_rerun, [grid, rerun_column, rerun_row, count, *values],
                              outputs, validator=validate_rerun, **shared)
    stop.click(on_stop, None, outputs, cancels=[run_event, rerun_event], api_name=False,
               queue=False)
