"""The Batch tab: many prompts under one constraint, its handlers (plain functions) and
its layout."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import gradio as gr

from playground.core.constraints import MODES
from playground.core.presets import Preset
from playground.core.settings import SamplingSettings
from playground.engines.base import Engine
from playground.errors import EngineNotReady, InputError
from playground.run import batch, downloads
from playground.web.controls import (
    ENGINE_QUEUE,
    PROGRESS,
    options_from_controls,
    refusal,
    sampling_controls,
)
from playground.web.inflight import Flight, InFlight
from playground.web.markdown_safe import plain

log = logging.getLogger(__name__)


async def batch_click(engine: Engine, mode: str, constraint_text: str, prompts_text: str,
                      file: str | None, *controls: Any, flight: Flight | None = None
                      ) -> AsyncIterator[tuple[Any, ...]]:
    """Stream (status, table rows, totals, download files) while a batch runs."""
    flight = flight or Flight()
    flight.begin()
    try:
        prompts = batch.parse_prompts(prompts_text, file)
        options = options_from_controls(*controls)
        if not engine.ready:
            yield ("Waiting for the model to finish loading …", gr.skip(), "", None)
        result = None
        source = f" of {plain(Path(file).name)}" if file else ""
        results = batch.run_batch(engine, mode, constraint_text, prompts, options)
        async with aclosing(results):
            async for result in results:
                flight.batch = result
                status = (f"{result.done} of {len(prompts)} prompts{source} done, "
                          f"{result.wall_s:.1f} s")
                yield (status, _table(result), gr.skip(), None)
        assert result is not None
        yield (f"Done: {_prompts(len(prompts))}{source} in {result.wall_s:.1f} s",
               _table(result), totals_markdown(result.totals), _export(result))
    except (InputError, OSError) as exc:
        log.info("input error: %s", exc)
        yield (f'<span class="bad">{plain(str(exc))}</span>', gr.skip(), gr.skip(), None)
    except EngineNotReady as exc:
        yield (f'<span class="bad">{plain(str(exc))}</span>', gr.skip(), gr.skip(), None)
    except Exception as exc:
        log.exception("a batch failed")
        message = plain(f"{type(exc).__name__}: {exc}")
        yield (f'<span class="bad">{message}</span>', gr.skip(), gr.skip(), None)
    finally:
        flight.done.set()

async def batch_stop_click(flight: Flight | None) -> tuple[Any, ...]:
    """Stop: end the batch, then show it so far, its stopped prompts labelled, with totals
    and files."""
    if flight is not None:
        flight.stop()
    if flight is None or flight.batch is None or not await flight.ended():
        return (gr.skip(),) * 4
    result = flight.batch
    totals = result.totals
    if not totals.get("stopped") and totals.get("finished") == len(result.prompts):
        return (gr.skip(),) * 4  # it had finished before the Stop
    status = (f"Stopped by user: {totals['finished'] - totals['stopped']} of "
              f"{len(result.prompts)} prompts finished, {result.wall_s:.1f} s")
    return (status, _table(result), totals_markdown(result.totals), _export(result))

def _prompts(count: int) -> str:
    return f"{count} prompt{'' if count == 1 else 's'}"

def _table(result: batch.BatchResult) -> list[list[Any]]:
    def cell(value: Any) -> Any:
        if isinstance(value, bool):  # constraint_escaped: only a "yes" should catch the eye
            return "yes" if value else ""
        return round(value, 3) if isinstance(value, float) else value

    return [[cell(row[c]) if c != "errors" else "; ".join(row[c] or [])
             for c in batch.COLUMNS] for row in result.rows()]

def totals_markdown(totals: dict[str, Any]) -> str:
    rate = totals.get("validity_rate")
    speed = totals.get("tokens_per_s")
    return (f"**Validity:** {'–' if rate is None else f'{rate:.0%}'} "
            f"({totals['valid']} valid, {totals['invalid']} invalid, "
            f"{totals['truncated']} truncated, {totals['error']} errors"
            + (f", {totals['stopped']} stopped by user" if totals.get("stopped") else "")
            + (f", {totals['unjudged']} unjudged (validation limit)"
               if totals.get("unjudged") else "")
            + (f", {totals['prompts'] - totals['finished']} not run"
               if totals.get("finished", totals["prompts"]) < totals["prompts"] else "")
            + f" of {totals['prompts']}) · **Output tokens:** {totals['output_tokens']} · "
            f"**Throughput:** {'–' if speed is None else f'{speed:.1f}'} tokens/s · "
            f"**Wall time:** {totals['wall_s']:.2f} s"
            + (f" · **Constraint not enforced by the engine: {totals['constraint_escaped']} "
               "outputs**" if totals.get("constraint_escaped") else "")
            + (f" · **Odd tokenization:** {totals['odd_tokenization']} outputs spelled in "
               "tokens the tokenizer would not write (see a run's verdict)"
               if totals.get("odd_tokenization") else "")
            + (f" · {plain(totals['note'])}" if totals.get("note") else "")
            + " · <small>*valid* fits the format: it is not a check that an answer is true"
            "</small>")

def _export(result: batch.BatchResult) -> list[str]:
    return downloads.save({"batch.jsonl": batch.to_jsonl(result),
                           "batch.csv": batch.to_csv(result)})

def validate_batch(mode: Any, constraint: Any, prompts_text: Any, file: Any,
                   *controls: Any) -> list[Any]:
    """The Run batch validator (inputs mode, constraint, prompts, file, *controls): a
    batch that will be refused is refused when it joins the queue, not after waiting."""
    def check() -> None:
        batch.check_batch_before_queue(mode, constraint, prompts_text, file,
                                       options_from_controls(*controls))

    def where(message: str) -> int:
        if file and message.startswith(Path(str(file)).name):  # before "prompt": prompts.txt
            return 3
        if message.startswith(("prompt", "batch", "the prompts box", "the batch has")):
            return 3 if file else 2
        if message.startswith(("options", "sampling", "stop", "the batch")):
            return 4
        return 0 if message.startswith("mode") else 1

    return refusal(check, 4 + len(controls), where)


def prompts_box(file: str | None) -> Any:
    """The prompts box while a file is chosen: greyed out and saying the file replaces it
    (a file's prompts run alone, see batch.parse_prompts)."""
    if file:
        return gr.Textbox(interactive=False, label=f"Prompts: those of {Path(file).name} "
                          "run instead of these (remove the file to use the box)")
    return gr.Textbox(interactive=True, label=PROMPTS_LABEL)


PROMPTS_LABEL = "Prompts, one per line"
# The table's headers, column for column with batch.COLUMNS (the exports keep the field
# names): the field names broke into letters in columns this narrow.
TABLE_HEADERS = {"index": "#", "prompt": "prompt", "text": "output", "verdict": "verdict",
                 "constraint_escaped": "escaped", "errors": "errors",
                 "prompt_tokens": "prompt tokens", "output_tokens": "output tokens",
                 "latency_s": "latency (s)", "ttft_s": "first token (s)",
                 "tokens_per_s": "tokens/s", "finish_reason": "finish"}
TABLE_WIDTHS = ["3%", "15%", "15%", "7%", "7%", "12%", "6%", "6%", "7%", "7%", "8%", "7%"]


def _batch_tab(engine: Engine, presets: dict[str, Preset], limit: int,
               flights: InFlight) -> None:
    example = next(iter(presets.values()), None)
    with gr.Tab("Batch", elem_id="tab-batch"):
        with gr.Row():
            with gr.Column():
                mode = gr.Radio(list(MODES), value=example.mode if example else "choice",
                                label="Mode", elem_id="batch-mode")
                editor = gr.Code(value=example.constraint_text if example else "",
                                 language=None, label="Constraint (as in the mode's tab)",
                                 lines=8, elem_id="batch-constraint")
                controls = sampling_controls(example.settings if example
                                              else SamplingSettings())
            with gr.Column():
                prompts = gr.Textbox(label=PROMPTS_LABEL, lines=8,
                                     value=example.prompt if example else "",
                                     elem_id="batch-prompts")
                upload = gr.File(label="…or a .txt / .jsonl file of prompts: it replaces "
                                 "the box's prompts", file_types=[".txt", ".jsonl"],
                                 type="filepath", height=150, elem_id="batch-file")
        with gr.Row():
            run = gr.Button("Run batch", variant="primary", elem_id="batch-run")
            stop = gr.Button("Stop", variant="stop", elem_id="batch-stop")
        # Full width below the form: twelve columns did not fit beside it.
        status = gr.Markdown(elem_id="batch-status")
        totals = gr.Markdown(elem_id="batch-totals")
        table = gr.Dataframe(headers=[TABLE_HEADERS[c] for c in batch.COLUMNS], wrap=True,
                             column_widths=TABLE_WIDTHS, interactive=False,
                             elem_id="batch-table")
        files = gr.File(label="Download (JSONL, CSV)", file_count="multiple")

    upload.change(prompts_box, upload, prompts, api_name=False, queue=False)

    async def on_run(request: gr.Request, *values: Any) -> AsyncIterator[tuple[Any, ...]]:
        async for update in flights.updates(
                request.session_hash, "batch",
                lambda flight: batch_click(engine, *values, flight=flight)):
            yield update

    async def on_stop(request: gr.Request) -> tuple[Any, ...]:
        return await batch_stop_click(flights.get(request.session_hash, "batch"))

    # The queue's place and timer on the status line only: on the table they were drawn
    # over its last row.
    run_event = run.click(on_run, [mode, editor, prompts, upload, *controls],
                          [status, table, totals, files], api_name=False,
                          concurrency_id=ENGINE_QUEUE, concurrency_limit=limit,
                          show_progress=PROGRESS, show_progress_on=status,
                          validator=validate_batch)
    stop.click(on_stop, None, [status, table, totals, files], cancels=[run_event],
               api_name=False, queue=False)
