"""The page's session tools: "Copy as code" under each tab, and the History tab.

Layout helpers and plain handlers (tests call them directly); `web/page.py` places and wires
them. Every browser session has its own history (a `gr.State`); nothing is shared.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from playground.core.constraints import MODES, Mode
from playground.errors import InputError
from playground.run import export, history
from playground.run.history import Run, SessionStore
from playground.run.service import parse_constraint, parse_settings
from playground.web.markdown_safe import plain
from playground.web.side_by_side import compare_runs

log = logging.getLogger(__name__)
RunNumber = str | float | None  # run A or B as its box holds it (text) or a handler gives it
CSS = """
table.compare {border-collapse:collapse;width:100%;font-size:0.9em}
table.compare th, table.compare td {border:1px solid #ddd;padding:4px 8px;vertical-align:top;
  text-align:left}
table.compare pre {white-space:pre-wrap;margin:0;max-height:16em;overflow:auto}
table.compare tr.differs th {color:#b45309}
"""

# ---- copy as code ----------------------------------------------------------------------


def export_text(target: export.Target, mode: str, form: str, constraint_text: str,
                prompt: str, options: dict[str, Any], lenient: bool = False) -> str:
    """The snippet (of the lenient run where ticked), or a comment saying what to fix
    first."""
    try:
        constraint, _ = parse_constraint(mode, constraint_text)
        note = ""
        if lenient:
            constraint, note = export.lenient_for(constraint, target)
        return note + export.snippet(form, constraint, prompt, parse_settings(options),
                                     target)
    except InputError as exc:
        return f"# Fix this first: {exc}\n"
    except TimeoutError as exc:
        return f"# The lenient schema was not found in time: {exc}\n"
    except Exception as exc:  # a converter's failure: say so, keep the page serving
        log.exception("copy as code failed")
        return f"# This constraint cannot be converted for vLLM: {type(exc).__name__}: {exc}\n"


def export_code(target: export.Target, mode: str, form: str, constraint_text: str,
                prompt: str, options: dict[str, Any], lenient: bool = False) -> Any:
    return gr.Code(value=export_text(target, mode, form, constraint_text, prompt, options,
                                     lenient),
                   language="shell" if form == "curl" else "python")


def copy_as_code(mode: Mode) -> tuple[gr.Accordion, gr.Radio, gr.Code]:
    """Filled when opened, not when the page is built: converting a Lark grammar imports
    xgrammar, hence torch, which delayed the page by seconds (10.5 s to the page on the
    H100 machine, where torch loads CUDA's libraries)."""
    with gr.Accordion("Copy as code", open=False, elem_id=f"{mode}-export-panel") as panel:
        form = gr.Radio(list(export.FORMS), value="python", show_label=False,
                        info="vLLM offline API · openai client for `vllm serve` · curl",
                        elem_id=f"{mode}-export-form")
        code = gr.Code(value="", language="python", interactive=False, lines=12,
                       max_lines=40, buttons=["copy", "download"], show_label=False,
                       elem_id=f"{mode}-export")
    return panel, form, code


# ---- history ---------------------------------------------------------------------------


@dataclass
class HistoryParts:
    """The session's runs and what shows them; made before the tabs that fill them."""

    runs: gr.State
    session: gr.State  # the random id of this session's file under --history-dir, or ""
    table: gr.Dataframe
    store: SessionStore | None


def history_parts(store: SessionStore | None) -> HistoryParts:
    return HistoryParts(
        runs=gr.State([]), session=gr.State(""),
        table=gr.Dataframe(headers=history.COLUMNS, value=[], interactive=False, wrap=True,
                           render=False, elem_id="history-table"),
        store=store)


async def keep(runs: list[Run], session_id: str, store: SessionStore | None,
               final: dict[str, Any], prompt: str, constraint_text: str,
               options: dict[str, Any]) -> list[Run]:
    """The history with the run that `final` finished; saved under --history-dir."""
    run = history.record(final, prompt, constraint_text, parse_settings(options), runs)
    runs = history.add(runs, run)
    await _save(store, session_id, runs)
    return runs


async def _save(store: SessionStore | None, session_id: str, runs: list[Run]) -> None:
    if store is not None and session_id:
        await asyncio.to_thread(store.save, session_id, runs)


def select(runs: list[Run], a: RunNumber, row: int) -> tuple[int | None, int | None]:
    """A click on a table row: that run becomes A, the previous A becomes B."""
    rows = history.table(runs)
    if not 0 <= row < len(rows):
        return _id(a), None
    return rows[row][0], _id(a)


def _id(value: RunNumber) -> int | None:
    """A run number as the A and B boxes hold it: text, empty until a row is picked (a
    number box showed "0" for no run)."""
    if value is None or str(value).strip() == "":
        return None
    try:
        return int(float(str(value).strip()))
    except (ValueError, OverflowError):
        return None


def comparison(runs: list[Run], a: RunNumber, b: RunNumber) -> str:
    run_a, run_b = history.find(runs, _id(a)), history.find(runs, _id(b))
    if run_a is None or run_b is None:
        return ("<em>Click two rows (or type two run numbers) to compare them side by "
                "side.</em>")
    return compare_runs(run_a, run_b)


def save(runs: list[Run], a: RunNumber, kind: str) -> tuple[str | None, str]:
    """(file to download, message)."""
    if kind == "run":
        run = history.find(runs, _id(a))
        if run is None:
            return None, '<span class="bad">Pick a run first (click its row).</span>'
        return history.download([run], "run"), f"Run #{run.id} saved."
    if not runs:
        return None, '<span class="bad">No runs yet.</span>'
    return history.download(runs, "history"), f"{len(runs)} runs saved."


async def load(runs: list[Run], session_id: str, store: SessionStore | None,
               path: str | None) -> tuple[list[Run], list[list[Any]], str, Any, Any]:
    """An uploaded run or history file: (runs, table, message, A, B)."""
    if not path:
        return runs, gr.skip(), "", gr.skip(), gr.skip()
    try:
        loaded = await asyncio.to_thread(history.load_file, path)
    except InputError as exc:
        return runs, gr.skip(), f'<span class="bad">{plain(str(exc))}</span>', \
            gr.skip(), gr.skip()
    runs, shown = history.restore(runs, loaded)
    table = history.table(runs)  # before saving: nothing kept that cannot be shown
    await _save(store, session_id, runs)
    what = (f"history of {len(loaded.runs)} runs restored" if loaded.kind == "history"
            else f"run loaded as #{shown.id}" if shown else "nothing to load")
    # Verdicts are shown as the file recorded them: a file is the user's own, not re-judged.
    return runs, table, what.capitalize() + " (verdicts as the file recorded them).", \
        shown.id if shown else None, None


def loading(path: str | None) -> str:
    """The message while an uploaded file is read and checked."""
    return f"Loading {plain(os.path.basename(path))} …" if path else ""


async def start_session(session_id: str, store: SessionStore | None
                        ) -> tuple[str, list[Run], list[list[Any]]]:
    """On page load under --history-dir: this browser's id (made here if it has none or
    one the server cannot have made) and its saved runs."""
    if store is None:
        return "", [], []
    if store.path(session_id) is None:
        session_id = history.new_session_id()
    runs = await asyncio.to_thread(store.load, session_id)
    return session_id, runs, history.table(runs)


def reopen(runs: list[Run], a: RunNumber, values: Callable[[Run], list[Any]],
           width: int) -> list[Any]:
    """Run A back in its tab: [selected tab, then `width` values per mode tab], the
    other tabs left as they are."""
    run = history.find(runs, _id(a))
    if run is None:
        return [gr.skip()] * (1 + width * len(MODES))
    out: list[Any] = [gr.Tabs(selected=run.mode)]
    for mode in MODES:
        out += values(run) if mode == run.mode else [gr.skip()] * width
    return out


def history_tab(parts: HistoryParts, tabs: gr.Tabs,
                fields: dict[Mode, list[gr.components.Component]],
                values: Callable[[Run], list[Any]]) -> None:
    """The History tab; `fields[mode]` are what `values(run)` fills in that mode's tab."""
    width = len(next(iter(fields.values())))
    with gr.Tab("History", id="history", elem_id="tab-history"):
        gr.Markdown("This page's runs, newest first (the last 50; kept for this browser "
                    "session only). Click a row to pick it as run A (the previous A becomes "
                    "B): A and B are compared below.")
        parts.table.render()
        with gr.Row():
            a = gr.Textbox(label="Run A", placeholder="click a row", max_lines=1,
                           elem_id="history-a")
            b = gr.Textbox(label="Run B", placeholder="click another row", max_lines=1,
                           elem_id="history-b")
            reopen_button = gr.Button("Open run A in its tab", elem_id="history-open")
        with gr.Row():
            save_run = gr.Button("Save run A (JSON)", size="sm", elem_id="history-save-run")
            save_all = gr.Button("Save the whole history (JSON)", size="sm",
                                 elem_id="history-save-all")
            upload = gr.UploadButton("Load a run or history file", file_types=[".json"],
                                     type="filepath", size="sm", elem_id="history-load")
        message = gr.Markdown(elem_id="history-message")
        saved = gr.File(label="Saved file", interactive=False, visible=False,
                        elem_id="history-file")
        compared = gr.HTML(comparison([], None, None), elem_id="history-compare")

    def on_select(runs: list[Run], current: RunNumber,
                  event: gr.SelectData) -> tuple[int | None, int | None]:
        return select(runs, current, event.index[0])

    parts.table.select(on_select, [parts.runs, a], [a, b], api_name=False)
    gr.on([a.change, b.change], comparison, [parts.runs, a, b], compared, api_name=False,
          show_progress="hidden")
    every = [component for mode in MODES for component in fields[mode]]
    reopen_button.click(lambda runs, run_id: reopen(runs, run_id, values, width),
                        [parts.runs, a], [tabs, *every], api_name=False)
    def shown(path: str | None, text: str) -> tuple[Any, str]:
        return gr.File(value=path, visible=path is not None), text

    save_run.click(lambda runs, run_id: shown(*save(runs, run_id, "run")), [parts.runs, a],
                   [saved, message], api_name=False)
    save_all.click(lambda runs: shown(*save(runs, None, "history")), [parts.runs],
                   [saved, message], api_name=False)

    async def on_upload(runs: list[Run], session_id: str, path: str | None
                        ) -> tuple[Any, ...]:
        return await load(runs, session_id, parts.store, path)

    # The last message (a red error of a bad file) goes at once, not when the next file
    # has been read and checked.
    upload.upload(loading, upload, message, api_name=False, queue=False).then(
        on_upload, [parts.runs, parts.session, upload], [parts.runs, parts.table, message,
                                                          a, b], api_name=False)


def wire_session(demo: gr.Blocks, parts: HistoryParts) -> None:
    """Under --history-dir: the browser keeps only its session's random id (localStorage);
    on load the server reads that session's runs back."""
    if parts.store is None:
        return
    browser_id = gr.BrowserState("", storage_key="structured-playground-session")

    async def on_load(session_id: str) -> tuple[str, str, list[Run], list[list[Any]]]:
        session_id, runs, rows = await start_session(session_id, parts.store)
        return session_id, session_id, runs, rows

    demo.load(on_load, browser_id, [browser_id, parts.session, parts.runs, parts.table],
              api_name=False)
