"""The Gradio page and its mode tabs. `build_ui` only lays out components and wires
events; the handlers are plain functions, which tests call directly. The Batch tab, the
engine panel and the controls every tab shares have modules of their own."""

from __future__ import annotations

import asyncio
import html
import json
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import gradio as gr

from playground.core.constraints import MODE_LABELS, MODES, Mode
from playground.core.presets import Preset
from playground.core.settings import SamplingSettings
from playground.engines.base import Engine
from playground.errors import ConstraintError, EngineNotReady, InputError
from playground.judging.judge import build_constraint
from playground.run import history, watchdog
from playground.run.service import parse_constraint, stream_request
from playground.run.streaming import Changes
from playground.run.token_inspector import CSS as INSPECT_CSS
from playground.run.token_inspector import mask_diff_html, strip_html
from playground.run.tokenization import Tokenization
from playground.run.tokenization import warning as tokenization_warning
from playground.web import doctor_panel, json_tree_view, railroad_view, session_panel, share_view
from playground.web.batch_tab import _batch_tab
from playground.web.compare_tab import CSS as COMPARE_CSS
from playground.web.compare_tab import compare_tab
from playground.web.controls import (
    API_UPDATE_EVERY_S,
    ENGINE_QUEUE,
    PAGE_UPDATE_EVERY_S,
    PROGRESS,
    constraint_editor,
    controls_from_settings,
    engine_ready,
    options_from_controls,
    sampling_controls,
    validate_api,
    validate_click,
)
from playground.web.inflight import Flight, InFlight
from playground.web.markdown_safe import plain
from playground.web.side_by_side import metrics_table
from playground.web.status import engine_concurrency, engine_markdown, engine_status, queue_load
from playground.web.tool_calls_view import CSS as TOOL_CALLS_CSS
from playground.web.tool_calls_view import calls_html

log = logging.getLogger(__name__)

EDITOR_HINTS: dict[Mode, str] = {
    "choice": "One choice per line. The output must be exactly one of them.",
    "regex": "A regular expression; the whole output must match it (a full match, judged with "
             "RE2: `\\d` and `\\w` are ASCII).",
    "json": "A JSON Schema (draft from `$schema`, default 2020-12). Remote `$ref`s are never "
            "fetched.",
    "grammar": "A Lark grammar with a `start` rule. Validation parses the output with `lark`.",
    "tool": "OpenAI's `tools` (name, description, a JSON Schema of the arguments) and "
            "`tool_choice`: `auto` (text or calls), `required` (calls only) or "
            '`{"type": "function", "function": {"name": ...}}` (that tool once). Only the '
            "`<tool_call>` blocks are constrained; the tools are rendered into the prompt.",
}
CSS = """
.badge {display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;color:white}
.badge.valid {background:#15803d} .badge.invalid {background:#b91c1c}
.badge.truncated {background:#b45309} .badge.error {background:#6b21a8}
.badge.running {background:#475569} .badge.stopped {background:#0e7490}
.badge.unjudged {background:#57534e}
.escaped {background:#b91c1c;color:white;font-weight:700;padding:6px 10px;border-radius:6px;
  margin-bottom:6px}
.good {color:#15803d;font-weight:600} .bad {color:#b91c1c;font-weight:600}
.warn {color:#b45309;font-weight:600}
.verdict-note {color:#4b5563;margin-left:4px}
.no-strip {color:#4b5563;font-style:italic}
.dialect-more summary {cursor:pointer;color:#4b5563}
/* Tables: headers break between words, never inside one ("e r r o r s"); a long cell
   (a JSON path, an error) wraps anywhere rather than widening its column past the edge. */
#batch-table th *, #json-coverage th *, #tool-coverage th *, [id$="-test-results"] th * {
  word-break:normal;overflow-wrap:normal;hyphens:none}
#batch-table td *, #json-coverage td *, #tool-coverage td *, [id$="-test-results"] td * {
  overflow-wrap:anywhere}
#batch-status {min-height:2.5em}
""" + session_panel.CSS + INSPECT_CSS + json_tree_view.CSS + COMPARE_CSS + TOOL_CALLS_CSS

# ---- handlers: plain functions ---------------------------------------------------------


def check_message(mode: str, constraint_text: str, engine: Engine | None = None) -> str:
    """Markdown saying whether the constraint is usable, with its warnings."""
    try:
        checker = engine if engine_ready(engine) else None
        constraint, warnings = parse_constraint(mode, constraint_text, checker)
    except InputError as exc:
        return f'<span class="bad">Constraint error:</span> {plain(str(exc))}'
    missing = doctor_panel.not_enforced_here(engine, constraint) if checker else []
    return warnings_message(warnings, missing, lenient_hint=mode == "json")


def not_enforced_text(engine: Engine, mode: str, constraint_text: str) -> list[str]:
    """`doctor_panel.not_enforced_here` for an editor's text (a schema, or a tool set's
    parameters), from the tables the editor's check already worked out (the check line of
    a run, which holds the model)."""
    if mode not in doctor_panel.COVERAGE_MODES or not engine_ready(engine):
        return []
    try:
        constraint = build_constraint(mode, constraint_text)
    except (InputError, ConstraintError):
        return []
    return doctor_panel.not_enforced_here(engine, constraint, compute=False)


def warnings_message(warnings: list[str], not_enforced: list[str] | None = None,
                     lenient_hint: bool = True) -> str:
    """The check line: OK (or what this engine will not enforce: "OK" in green beside the
    doctor's NOT ENFORCED rows read as a promise), then each warning. `lenient_hint`:
    False where the tab has no lenient run (the Tool call tab)."""
    if not_enforced:
        shown = ", ".join(not_enforced[:6]) + (" …" if len(not_enforced) > 6 else "")
        hint = ("; <em>Generate anyway (lenient)</em> runs with what it enforces"
                if lenient_hint else "")
        lines = ['<span class="warn">Constraint accepted, but this engine will not enforce:'
                 f"</span> {plain(shown)}; an output may break them (see Coverage{hint})"]
    else:
        lines = ['<span class="good">Constraint OK</span>']
    lines += [f'<span class="warn">Warning:</span> {plain(w)}' for w in warnings]
    return "<br>".join(lines)


def verdict_html(result: dict[str, Any]) -> str:
    status = result.get("verdict", "running")
    label = {"error": "engine error", "truncated": "truncated at max tokens",
             "stopped": "stopped by user",
             "unjudged": "unjudged (validation limit)"}.get(status, status)
    if status == "truncated" and result.get("finish_reason") == "stop":
        label = "cut by a stop string"
    items = "".join(f"<li>{html.escape(e)}</li>" for e in result.get("errors", []))
    escaped = ('<div class="escaped">constraint not enforced by the engine: this output was '
               "generated under the constraint and does not fit it</div>"
               if result.get("constraint_escaped") else "")
    note = VERDICT_NOTES.get(str(status), "")
    status, label = html.escape(str(status)), html.escape(str(label))
    return (f'{escaped}<span class="badge {status}" title="{note}">{label}</span>'
            + (f' <small class="verdict-note">{note}</small>' if note else "")
            + (f"<ul>{items}</ul>" if items else "") + tokenization_html(result)
            + calls_html(result))


def tokenization_html(result: dict[str, Any]) -> str:
    """The odd-tokenization line under a constrained verdict (run.tokenization), if any."""
    try:
        found = Tokenization.model_validate(result.get("tokenization"))
    except ValueError:  # none (a free run, an engine without a tokenizer) or a bad file
        return ""
    line = tokenization_warning(found)
    if not line:
        return ""
    head, _, rest = line.partition(": ")
    return (f'<div class="tokenization"><span class="warn">{html.escape(head)}:</span> '
            f"<small>{html.escape(rest)}</small></div>")


# "valid" read as "correct" to a stakeholder (a "no" to "Is the Pacific the largest
# ocean?" was valid): the verdict says what it judged, where it is shown.
VERDICT_NOTES = {"valid": "fits the format (not a check that it is true)",
                 "invalid": "does not fit the format"}


def result_panel(result: dict[str, Any], constrained: bool = True) -> tuple[str, str]:
    """The output text, and its verdict with the token strip under it when inspected."""
    return result.get("text", ""), (verdict_html(result) + strip_html(result, constrained)
                                      + mask_diff_html(result))


def panels(constrained: dict[str, Any], free: dict[str, Any]) -> tuple[str, ...]:
    """Both sides' text and verdict, and one metrics table. A side still running shows
    no metrics yet, so the table is redrawn only when a side finishes."""
    def done(result: dict[str, Any]) -> dict[str, Any]:
        return result if result.get("verdict", "running") != "running" else {}

    return (*result_panel(constrained), *result_panel(free, constrained=False),
            metrics_table(done(constrained), done(free)))


def run_values(run: history.Run) -> list[Any]:
    """A run from the history back in its tab: prompt, editor, controls, results and the
    check line as the run left it (a red error from an earlier click stayed there, beside
    a good run's results, when the editor's text was the same)."""
    # as_dict: a run never inspected has no inspector fields, so no "no strip" line.
    constrained, free = run.constrained.as_dict(), run.unconstrained.as_dict()
    return [run.prompt, run.constraint, *controls_from_settings(run.settings),
            *panels(constrained, free), warnings_message(run.warnings)]


NOTHING_RAN = ("", "", "", "", "")  # the panels of a click that never reached the model


async def run_click(engine: Engine, mode: str, constraint_text: str, prompt: str,
                    *controls: Any, flight: Flight | None = None,
                    runs: list[history.Run] | None = None, session_id: str = "",
                    store: history.SessionStore | None = None, inspect: bool = False,
                    lenient: bool = False, compare: bool = False
                    ) -> AsyncIterator[tuple[Any, ...]]:
    """Stream (check message, constrained text and verdict, unconstrained text and
    verdict, metrics table, history, history table): at most 5 updates a second, each
    with only what changed. A finished run joins `runs` (when given) in the last update.
    The last run's results go at once, so they never stand beside a new one.

    `flight` keeps the live results for `stop_click`."""
    flight = flight or Flight()
    flight.begin()
    skip = gr.skip()
    changes = Changes(6, skip)
    final = None
    try:
        options = options_from_controls(*controls)
        yield changes((skip, *panels({}, {}))) + (skip,) * 2
        if not engine.ready:
            yield ("Waiting for the model to finish loading …",) + (skip,) * 7
        # The inspector is a request option, not a sampling setting (history keeps these).
        requested = {**options, "inspect": True} if inspect else options
        if compare:  # an inspector option: it turns the inspector on, as in the API
            requested = {**requested, "inspect": True, "compare_backends": True}
        if lenient:  # the doctor's "generate anyway", a request option too
            requested = {**requested, "lenient": True}
        updates = stream_request(engine, mode, constraint_text, prompt, requested,
                                 live=flight.results, every_s=PAGE_UPDATE_EVERY_S)
        # Every generator in the chain is closed as soon as this one is (a Stop or a closed
        # page), so the engine drops the request now rather than when garbage is collected.
        async with aclosing(updates) as thinned:
            missing = await asyncio.to_thread(not_enforced_text, engine, mode,
                                              constraint_text)
            async for final in thinned:
                yield changes((warnings_message(final["warnings"], missing,
                                                lenient_hint=mode == "json"),
                               *panels(final["constrained"], final["unconstrained"]))
                              ) + (skip,) * 2
        if final is not None and runs is not None:
            runs = await session_panel.keep(runs, session_id, store, final, prompt,
                                         constraint_text, options)
            yield (skip,) * 6 + (runs, history.table(runs))
    except InputError as exc:
        log.info("input error: %s", exc)
        yield (f'<span class="bad">{plain(str(exc))}</span>',) + NOTHING_RAN + (skip,) * 2
    except EngineNotReady as exc:  # failed to load, or died: said once in the log already
        yield (f'<span class="bad">{plain(str(exc))}</span>',) + NOTHING_RAN + (skip,) * 2
    except Exception as exc:  # the page keeps serving; the user sees why, the log the trace
        log.exception("a run failed")
        message = plain(f"{type(exc).__name__}: {exc}")
        yield (f'<span class="bad">{message}</span>',) + NOTHING_RAN + (skip,) * 2
    finally:
        flight.done.set()


async def stop_click(flight: Flight | None) -> tuple[str, ...]:
    """Stop: end the run, then show its partial output, labelled (skips if none was
    stopped)."""
    if flight is not None:
        flight.stop()
    if flight is None or not await flight.ended() or not any(
            result.verdict == "stopped" for result in flight.results):
        return (gr.skip(),) * 6
    constrained, free = (result.as_dict() for result in flight.results)
    return ('<span class="warn">Stopped by user.</span>', *panels(constrained, free))


async def api_generate(engine: Engine, mode: str, constraint: str, prompt: str,
                       options: dict[str, Any] | str | None
                       ) -> AsyncIterator[dict[str, Any]]:
    """The `/generate` endpoint: the same object as `python -m playground run`, last.

    Partial results come every API_UPDATE_EVERY_S seconds, so a client that goes away is
    noticed (Gradio closes this generator at its next update) and its request stopped.
    """
    try:  # options as an object or a JSON string: checked (types, sizes) by the service
        updates = stream_request(engine, mode, constraint, prompt, options,
                                 every_s=API_UPDATE_EVERY_S)
        async with aclosing(updates):
            async for update in updates:
                yield update
    except (InputError, json.JSONDecodeError) as exc:
        log.info("input error: %s", exc)
        raise gr.Error(str(exc), print_exception=False) from None
    except EngineNotReady as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    except Exception as exc:
        log.exception("a /generate request failed")
        raise gr.Error(f"internal error ({type(exc).__name__}); the server log has the "
                       "details", print_exception=False) from None


def preset_values(presets: dict[str, Preset], name: str | None) -> list[Any]:
    if not name or name not in presets:
        return [gr.skip()] * 9
    preset = presets[name]
    return [preset.prompt, preset.constraint_text, *controls_from_settings(preset.settings)]


EDITED = " (edited)"


def pick_preset(presets: dict[str, Preset], names: list[str], name: str | None
                ) -> list[Any]:
    """A preset picked in the dropdown: the dropdown without any "(edited)" entry, then
    the preset's prompt, constraint and controls (see preset_values)."""
    if not name or name not in presets:
        return [gr.skip()] * 10
    return [gr.Dropdown(choices=names, value=name), *preset_values(presets, name)]


def preset_label(presets: dict[str, Preset], names: list[str], current: str | None,
                 prompt: str, constraint_text: str) -> Any:
    """The dropdown once the prompt or constraint changed: "<name> (edited)" while either
    differs from the preset's, the name again once both are its own. The name alone read
    as if the preset's own constraint were running."""
    base = (current or "").removesuffix(EDITED)
    if base not in presets:
        return gr.skip()
    preset = presets[base]
    # gr.Code drops a file's last newline: a grammar preset read "(edited)" once picked.
    edited = (prompt != preset.prompt
              or constraint_text.rstrip("\n") != preset.constraint_text.rstrip("\n"))
    value = base + EDITED if edited else base
    if value == current:
        return gr.skip()
    return gr.Dropdown(choices=[*names, value] if edited else names, value=value)


# ---- layout ----------------------------------------------------------------------------


def _result_column(title: str, elem: str) -> list[gr.components.Component]:
    with gr.Column():
        gr.Markdown(f"### {title}")
        badge = gr.HTML(elem_id=f"{elem}-verdict")
        text = gr.Textbox(label="Output", lines=6, interactive=False, elem_id=f"{elem}-text")
    return [text, badge]


# Long on purpose (~75 lines): a tab's layout, component by component in page order, and
# its event wiring; no logic (the handlers above are plain functions).
def _mode_tab(engine: Engine, presets: dict[str, Preset], mode: Mode, limit: int,
              flights: InFlight, parts: session_panel.HistoryParts
              ) -> list[gr.components.Component]:
    """The mode's tab; returns what a run from the history fills (see run_values)."""
    names = [name for name, preset in presets.items() if preset.mode == mode]
    first = presets[names[0]] if names else None
    defaults = first.settings if first else SamplingSettings()
    with gr.Tab(MODE_LABELS[mode], id=mode, elem_id=f"tab-{mode}") as tab:
        with gr.Row():
            with gr.Column(scale=2):
                preset = gr.Dropdown(names, value=names[0] if names else None, label="Preset",
                                     elem_id=f"{mode}-preset")
                prompt = gr.Textbox(value=first.prompt if first else "", label="Prompt",
                                    lines=3, elem_id=f"{mode}-prompt")
                editor = constraint_editor(mode, first.constraint_text if first else "")
                gr.Markdown(f"<small>{EDITOR_HINTS[mode]}</small>")
                check = gr.Markdown(check_message(mode, editor.value or ""),
                                    elem_id=f"{mode}-check")
                controls = sampling_controls(defaults)
                with gr.Row():
                    run = gr.Button("Run", variant="primary", elem_id=f"{mode}-run")
                    stop = gr.Button("Stop", variant="stop", elem_id=f"{mode}-stop")
                    inspect = gr.Checkbox(False, label="Inspect tokens", elem_id=f"{mode}-inspect",
                                          info="where the constraint acted, token by token")
                    compare = gr.Checkbox(False, label="Compare backends",
                                          elem_id=f"{mode}-compare",
                                          info="where xgrammar's and llguidance's masks "
                                               "differ (turns the inspector on)")
                    lenient = doctor_panel.lenient_checkbox(mode)
                doctor_panel.doctor_parts(engine, mode, editor, lenient, tab)
                export_panel, export_form, export_code = session_panel.copy_as_code(mode)
                share_view.share_parts(mode, editor, prompt, controls)
            with gr.Column(scale=3):
                with gr.Row():
                    constrained = _result_column("Constrained", f"{mode}-constrained")
                    free = _result_column("Unconstrained", f"{mode}-unconstrained")
                trees = json_tree_view.tree_parts(mode)  # the JSON tab's only
                metrics = gr.Markdown(elem_id=f"{mode}-metrics")
                doctor_panel.coverage_parts(engine, mode, editor, tab)
                railroad_view.diagram_parts(mode, editor, tab)
                doctor_panel.test_strings_parts(mode, editor)
        mode_state = gr.State(mode)  # inside the Tab: a stray child of Tabs breaks tab labels
    # `input`, the user's pick only: the "(edited)" label below changes the value too.
    preset.input(lambda name: pick_preset(presets, names, name), preset,
                 [preset, prompt, editor, *controls], api_name=False, queue=False)
    def relabel(name: str | None, text: str, constraint: str) -> Any:
        return preset_label(presets, names, name, text, constraint)

    # A preset pick writes prompt and editor at once: both `.change`s fire together and the
    # first may read the editor before its new value lands ("(edited)" on a fresh pick). The
    # chained second pass reads after a round trip, when both have settled.
    gr.on([prompt.change, editor.change], relabel, [preset, prompt, editor], preset,
          api_name=False, queue=False, trigger_mode="always_last", show_progress="hidden"
          ).then(relabel, [preset, prompt, editor], preset, api_name=False, queue=False,
                 show_progress="hidden")
    editor.change(lambda text: check_message(mode, text, engine), editor, check,
                  api_name=False, trigger_mode="always_last")

    def on_export(form: str, text: str, prompt_text: str, lenient_on: bool,
                  *values: Any) -> Any:
        return session_panel.export_code(session_panel.export.target_for(engine.info.as_dict()),
                                      mode, form, text, prompt_text,
                                      options_from_controls(*values), bool(lenient_on))

    gr.on([export_panel.expand, export_form.change, editor.change, prompt.change,
           lenient.change, *(c.change for c in controls)],
          on_export, [export_form, editor, prompt, lenient, *controls], export_code,
          api_name=False,
          trigger_mode="always_last", show_progress="hidden")

    async def on_run(request: gr.Request, *values: Any) -> AsyncIterator[tuple[Any, ...]]:
        flight = flights.start(request.session_hash, mode)
        drawn = json_tree_view.Trees(flight, trees)
        *inputs, inspect_on, compare_on, lenient_on, runs, session_id = values
        async with aclosing(run_click(engine, *inputs, flight=flight, runs=runs,
                                      session_id=session_id, store=parts.store,
                                      inspect=bool(inspect_on),
                                      lenient=bool(lenient_on),
                                      compare=bool(compare_on))) as updates:
            async for update in updates:  # closed with this: Gradio closes only the outer
                yield update + await drawn()

    async def on_stop(request: gr.Request) -> tuple[str, ...]:
        flight = flights.get(request.session_hash, mode)
        shown = await stop_click(flight)
        return shown + json_tree_view.after_stop(flight, trees, shown)

    results = [*constrained, *free, metrics]
    run_event = run.click(on_run, [mode_state, editor, prompt, *controls, inspect, compare,
                                   lenient, parts.runs, parts.session],
                          [check, *results, parts.runs, parts.table, *trees], api_name=False,
                          concurrency_id=ENGINE_QUEUE, concurrency_limit=limit,
                          show_progress=PROGRESS, validator=validate_click())
    stop.click(on_stop, None, [check, *results, *trees], cancels=[run_event],
               api_name=False, queue=False)
    return [prompt, editor, *controls, *results, check]


def build_ui(engine: Engine, presets: dict[str, Preset],
             concurrency: int | None = None, history_dir: str | None = None) -> gr.Blocks:
    """The page. Model events share one queue group of `concurrency` (default: the
    engine's, see engine_concurrency); the panel and /status stay off the queue, so
    they answer however busy the model is."""
    limit = concurrency or engine_concurrency(engine)
    flights = InFlight()
    with gr.Blocks(title="structured-playground") as demo:
        gr.Markdown("# structured-playground\nWatch a model write output that is *guaranteed* "
                    "to fit a format, next to the same model writing freely.")
        panel = gr.Markdown(engine_markdown(engine), elem_id="engine-panel")
        timer = gr.Timer(1.0)
        shown = gr.State("")

        def tick(last: str) -> tuple[Any, Any]:
            # Sent only when it changed: a redraw a second is work the model's cores do.
            text = engine_markdown(engine, queue_load(demo))
            return (gr.skip(), gr.skip()) if text == last else (text, text)

        timer.tick(tick, shown, [panel, shown], api_name=False, show_progress="hidden",
                   queue=False)
        parts = session_panel.history_parts(
            history.SessionStore(history_dir) if history_dir else None)
        with gr.Tabs() as tabs:
            fields = {mode: _mode_tab(engine, presets, mode, limit, flights, parts)
                      for mode in MODES}
            _batch_tab(engine, presets, limit, flights)
            compare_tab(engine, presets, flights, fields)
            session_panel.history_tab(parts, tabs, fields, run_values)
        share_view.wire_load(demo, tabs, fields)  # a ?share= link back in its tab
        session_panel.wire_session(demo, parts)

        async def generate(mode: str, constraint: str, prompt: str,
                           options: dict[str, Any] | str | None
                           ) -> AsyncIterator[dict[str, Any]]:
            async with aclosing(api_generate(engine, mode, constraint, prompt,
                                             options)) as updates:
                async for update in updates:
                    yield update

        endpoint = gr.api(generate, api_name="generate", concurrency_id=ENGINE_QUEUE,
                          concurrency_limit=limit)
        # gr.api takes no validator; its event does (checked by tests/web/test_hostile.py).
        demo.fns[endpoint["id"]].validator = validate_api

        async def status() -> dict[str, Any]:
            # On the loop (it is cheap), so the loop's watchdog starts with the first
            # readiness check, before any user's request.
            watchdog.watch()
            return engine_status(engine, queue_load(demo))

        gr.api(status, api_name="status", queue=False)
        doctor_panel.add_api(engine)
        share_view.add_api()
    return demo
