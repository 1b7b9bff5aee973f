"""The Gradio page. `build_ui` only lays out components and wires events; the handlers
are plain functions above it, which tests call directly."""

from __future__ import annotations

import html
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr

from playground import batch
from playground.constraints import MODE_LABELS, MODES, Mode
from playground.engines.base import Engine, SamplingSettings
from playground.presets import Preset
from playground.service import InputError, parse_constraint, run_request, stream_request

EDITOR_HINTS: dict[Mode, str] = {
    "choice": "One choice per line. The output must be exactly one of them.",
    "regex": "A regular expression; the whole output must match it (Python `re` full match).",
    "json": "A JSON Schema (draft from `$schema`, default 2020-12). Remote `$ref`s are never "
            "fetched.",
    "grammar": "A Lark grammar with a `start` rule. Validation parses the output with `lark`.",
}
CSS = """
.badge {display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;color:white}
.badge.valid {background:#15803d} .badge.invalid {background:#b91c1c}
.badge.truncated {background:#b45309} .badge.error {background:#6b21a8}
.badge.running {background:#475569}
.escaped {background:#b91c1c;color:white;font-weight:700;padding:6px 10px;border-radius:6px;
  margin-bottom:6px}
.good {color:#15803d;font-weight:600} .bad {color:#b91c1c;font-weight:600}
.warn {color:#b45309;font-weight:600}
"""

# ---- handlers: plain functions ---------------------------------------------------------


def options_from_controls(max_tokens: float, temperature: float, top_p: float,
                          seed: float | None, stop_text: str, chat_template: bool,
                          system_prompt: str) -> dict[str, Any]:
    return {
        "max_tokens": int(max_tokens), "temperature": float(temperature),
        "top_p": float(top_p), "seed": None if seed in (None, "") else int(seed),
        "stop": [json.loads(f'"{line}"') if "\\" in line else line
                 for line in (stop_text or "").splitlines() if line],
        "chat_template": bool(chat_template), "system_prompt": system_prompt or "",
    }


def controls_from_settings(settings: SamplingSettings) -> list[Any]:
    stops = [json.dumps(stop)[1:-1] for stop in settings.stop]  # "\n" shows as \n
    return [settings.max_tokens, settings.temperature, settings.top_p, settings.seed,
            "\n".join(stops), settings.chat_template, settings.system_prompt]


def check_message(mode: str, constraint_text: str, engine: Engine | None = None) -> str:
    """Markdown saying whether the constraint is usable, with its warnings."""
    try:
        _, warnings = parse_constraint(mode, constraint_text, engine if _ready(engine) else None)
    except InputError as exc:
        return f'<span class="bad">Constraint error:</span> {html.escape(str(exc))}'
    return warnings_message(warnings)


def warnings_message(warnings: list[str]) -> str:
    lines = ['<span class="good">Constraint OK</span>']
    lines += [f'<span class="warn">Warning:</span> {html.escape(w)}' for w in warnings]
    return "<br>".join(lines)


def verdict_html(result: dict[str, Any]) -> str:
    status = result.get("verdict", "running")
    label = {"error": "engine error", "truncated": "truncated at max tokens"}.get(status, status)
    items = "".join(f"<li>{html.escape(e)}</li>" for e in result.get("errors", []))
    escaped = ('<div class="escaped">constraint not enforced by the engine: this output was '
               "generated under the constraint and does not fit it</div>"
               if result.get("constraint_escaped") else "")
    return (f'{escaped}<span class="badge {status}">{label}</span>'
            + (f"<ul>{items}</ul>" if items else ""))


def metrics_markdown(result: dict[str, Any]) -> str:
    def seconds(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f} s"

    rate = result.get("tokens_per_s")
    rows = [
        ("prompt / output tokens", f"{result.get('prompt_tokens') or '–'} / "
                                   f"{result.get('output_tokens', 0)}"),
        ("total latency", seconds(result.get("latency_s"))),
        ("time to first token", seconds(result.get("ttft_s"))),
        ("tokens/s (decode)", "–" if rate is None else f"{rate:.1f}"),
        ("grammar compile", seconds(result.get("compile_s"))),
        ("finish reason", str(result.get("finish_reason") or "–")),
    ]
    rows += [(f"engine: {name}", seconds(value))
             for name, value in (result.get("engine_timings") or {}).items()]
    return "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def result_panel(result: dict[str, Any]) -> tuple[str, str, str]:
    return result.get("text", ""), verdict_html(result), metrics_markdown(result)


async def run_click(engine: Engine, mode: str, constraint_text: str, prompt: str,
                    *controls: Any) -> AsyncIterator[tuple[str, ...]]:
    """Stream (check message, constrained panel x3, unconstrained panel x3)."""
    try:
        options = options_from_controls(*controls)
        if not engine.ready:
            yield ("Waiting for the model to finish loading …",) + (gr.skip(),) * 6
        async for update in stream_request(engine, mode, constraint_text, prompt, options):
            yield (warnings_message(update["warnings"]), *result_panel(update["constrained"]),
                   *result_panel(update["unconstrained"]))
    except InputError as exc:
        yield (f'<span class="bad">{html.escape(str(exc))}</span>',) + (gr.skip(),) * 6
    except Exception as exc:  # the page keeps serving; the user sees why
        message = html.escape(f"{type(exc).__name__}: {exc}")
        yield (f'<span class="bad">{message}</span>',) + (gr.skip(),) * 6


async def api_generate(engine: Engine, mode: str, constraint: str, prompt: str,
                       options: dict[str, Any] | str | None) -> dict[str, Any]:
    """The `/generate` endpoint: the same object as `python -m playground run`."""
    try:
        if isinstance(options, str):
            options = json.loads(options) if options.strip() else {}
        return await run_request(engine, mode, constraint, prompt, options)
    except (InputError, json.JSONDecodeError) as exc:
        raise gr.Error(str(exc)) from None


async def batch_click(engine: Engine, mode: str, constraint_text: str, prompts_text: str,
                      file: str | None, *controls: Any
                      ) -> AsyncIterator[tuple[Any, ...]]:
    """Stream (status, table rows, totals, download files) while a batch runs."""
    try:
        prompts = batch.parse_prompts(prompts_text, file)
        options = options_from_controls(*controls)
        if not engine.ready:
            yield ("Waiting for the model to finish loading …", gr.skip(), "", None)
        result = None
        async for result in batch.run_batch(engine, mode, constraint_text, prompts, options):
            status = f"{result.done} of {len(prompts)} prompts done, {result.wall_s:.1f} s"
            yield (status, _table(result), gr.skip(), None)
        assert result is not None
        yield (f"Done: {len(prompts)} prompts in {result.wall_s:.1f} s", _table(result),
               totals_markdown(result.totals), _export(result))
    except (InputError, OSError) as exc:
        yield (f'<span class="bad">{html.escape(str(exc))}</span>', gr.skip(), gr.skip(), None)


def _table(result: batch.BatchResult) -> list[list[Any]]:
    def cell(value: Any) -> Any:
        return round(value, 3) if isinstance(value, float) else value

    return [[cell(row[c]) if c != "errors" else "; ".join(row[c] or [])
             for c in batch.COLUMNS] for row in result.rows()]


def totals_markdown(totals: dict[str, Any]) -> str:
    rate = totals.get("validity_rate")
    speed = totals.get("tokens_per_s")
    return (f"**Validity:** {'–' if rate is None else f'{rate:.0%}'} "
            f"({totals['valid']} valid, {totals['invalid']} invalid, "
            f"{totals['truncated']} truncated, {totals['error']} errors of "
            f"{totals['prompts']}) · **Output tokens:** {totals['output_tokens']} · "
            f"**Throughput:** {'–' if speed is None else f'{speed:.1f}'} tokens/s · "
            f"**Wall time:** {totals['wall_s']:.2f} s"
            + (f" · **Constraint not enforced by the engine: {totals['constraint_escaped']} "
               "outputs**" if totals.get("constraint_escaped") else ""))


def _export(result: batch.BatchResult) -> list[str]:
    folder = Path(tempfile.mkdtemp(prefix="playground-batch-"))
    (folder / "batch.jsonl").write_text(batch.to_jsonl(result), encoding="utf-8")
    (folder / "batch.csv").write_text(batch.to_csv(result), encoding="utf-8")
    return [str(folder / "batch.jsonl"), str(folder / "batch.csv")]


def engine_status(engine: Engine) -> dict[str, Any]:
    fraction, message = engine.progress
    return {"ready": engine.ready, "error": engine.load_error, "progress": fraction,
            "message": message, "engine": engine.info.as_dict(),
            "last_error": engine.last_error}


def engine_markdown(engine: Engine) -> str:
    info = engine.info
    fraction, message = engine.progress
    state = ("ready" if engine.ready else f"failed to load: {engine.load_error}"
             if engine.load_error else f"loading {fraction:.0%}: {message}")
    if engine.ready and engine.last_error:
        state += f", but the last request failed: {engine.last_error}"
    options = ", ".join(f"{k}={v}" for k, v in info.options.items()) or "defaults"
    return (f"**Engine:** {info.name} · **Model:** {info.model} · **Device:** {info.device}"
            f" · **State:** {html.escape(state, quote=False)}  \n"
            f"<small>Options: {html.escape(options)}</small>")


def preset_values(presets: dict[str, Preset], name: str | None) -> list[Any]:
    if not name or name not in presets:
        return [gr.skip()] * 9
    preset = presets[name]
    return [preset.prompt, preset.constraint_text, *controls_from_settings(preset.settings)]


def _ready(engine: Engine | None) -> bool:
    return engine is not None and engine.ready


# ---- layout ----------------------------------------------------------------------------


def _editor(mode: Mode, value: str) -> gr.components.Component:
    if mode == "json":
        return gr.Code(value=value, language="json", label="JSON Schema", lines=14,
                       elem_id=f"{mode}-constraint")
    if mode == "grammar":
        return gr.Code(value=value, language=None, label="Lark grammar", lines=12,
                       elem_id=f"{mode}-constraint")
    label = "Choices (one per line)" if mode == "choice" else "Regex"
    return gr.Textbox(value=value, label=label, lines=5 if mode == "choice" else 1,
                      elem_id=f"{mode}-constraint")


def _sampling_controls(defaults: SamplingSettings) -> list[gr.components.Component]:
    with gr.Accordion("Sampling", open=False):
        return [
            gr.Number(defaults.max_tokens, label="Max tokens", precision=0, minimum=1,
                      maximum=8192),
            gr.Slider(0, 2, defaults.temperature, step=0.05, label="Temperature"),
            gr.Slider(0.05, 1, defaults.top_p, step=0.05, label="Top-p"),
            gr.Number(defaults.seed, label="Seed (empty: random)", precision=0),
            gr.Textbox(controls_from_settings(defaults)[4], lines=2,
                       label="Stop strings (one per line; \\n for newline)"),
            gr.Checkbox(defaults.chat_template, label="Use the chat template"),
            gr.Textbox(defaults.system_prompt, label="System prompt (optional)"),
        ]


def _result_column(title: str, elem: str) -> list[gr.components.Component]:
    with gr.Column():
        gr.Markdown(f"### {title}")
        badge = gr.HTML(elem_id=f"{elem}-verdict")
        text = gr.Textbox(label="Output", lines=6, interactive=False, elem_id=f"{elem}-text")
        metrics = gr.Markdown(elem_id=f"{elem}-metrics")
    return [text, badge, metrics]


def _mode_tab(engine: Engine, presets: dict[str, Preset], mode: Mode) -> None:
    names = [name for name, preset in presets.items() if preset.mode == mode]
    first = presets[names[0]] if names else None
    defaults = first.settings if first else SamplingSettings()
    with gr.Tab(MODE_LABELS[mode], elem_id=f"tab-{mode}"):
        with gr.Row():
            with gr.Column(scale=2):
                preset = gr.Dropdown(names, value=names[0] if names else None, label="Preset",
                                     elem_id=f"{mode}-preset")
                prompt = gr.Textbox(value=first.prompt if first else "", label="Prompt",
                                    lines=3, elem_id=f"{mode}-prompt")
                editor = _editor(mode, first.constraint_text if first else "")
                gr.Markdown(f"<small>{EDITOR_HINTS[mode]}</small>")
                check = gr.Markdown(check_message(mode, editor.value or ""),
                                    elem_id=f"{mode}-check")
                controls = _sampling_controls(defaults)
                run = gr.Button("Run", variant="primary", elem_id=f"{mode}-run")
            with gr.Column(scale=3), gr.Row():
                constrained = _result_column("Constrained", f"{mode}-constrained")
                free = _result_column("Unconstrained", f"{mode}-unconstrained")
        mode_state = gr.State(mode)  # inside the Tab: a stray child of Tabs breaks tab labels
    preset.change(lambda name: preset_values(presets, name), preset,
                  [prompt, editor, *controls], api_name=False)
    editor.change(lambda text: check_message(mode, text, engine), editor, check,
                  api_name=False, trigger_mode="always_last")

    async def on_run(*values: Any) -> AsyncIterator[tuple[str, ...]]:
        async for update in run_click(engine, *values):
            yield update

    run.click(on_run, [mode_state, editor, prompt, *controls], [check, *constrained, *free],
              api_name=False, concurrency_limit=None)


def _batch_tab(engine: Engine, presets: dict[str, Preset]) -> None:
    example = next(iter(presets.values()), None)
    with gr.Tab("Batch", elem_id="tab-batch"):
        with gr.Row():
            with gr.Column(scale=2):
                mode = gr.Radio(list(MODES), value=example.mode if example else "choice",
                                label="Mode", elem_id="batch-mode")
                editor = gr.Code(value=example.constraint_text if example else "",
                                 language=None, label="Constraint (as in the mode's tab)",
                                 lines=8, elem_id="batch-constraint")
                prompts = gr.Textbox(label="Prompts, one per line", lines=8,
                                     value=example.prompt if example else "",
                                     elem_id="batch-prompts")
                upload = gr.File(label="…or a .txt / .jsonl file of prompts",
                                 file_types=[".txt", ".jsonl"], type="filepath")
                controls = _sampling_controls(example.settings if example
                                              else SamplingSettings())
                run = gr.Button("Run batch", variant="primary", elem_id="batch-run")
            with gr.Column(scale=3):
                status = gr.Markdown(elem_id="batch-status")
                totals = gr.Markdown(elem_id="batch-totals")
                table = gr.Dataframe(headers=batch.COLUMNS, wrap=True, elem_id="batch-table")
                files = gr.File(label="Download (JSONL, CSV)", file_count="multiple")

    async def on_run(*values: Any) -> AsyncIterator[tuple[Any, ...]]:
        async for update in batch_click(engine, *values):
            yield update

    run.click(on_run, [mode, editor, prompts, upload, *controls],
              [status, table, totals, files], api_name=False, concurrency_limit=None)


def build_ui(engine: Engine, presets: dict[str, Preset]) -> gr.Blocks:
    with gr.Blocks(title="structured-playground") as demo:
        gr.Markdown("# structured-playground\nWatch a model write output that is *guaranteed* "
                    "to fit a format, next to the same model writing freely.")
        panel = gr.Markdown(engine_markdown(engine), elem_id="engine-panel")
        timer = gr.Timer(1.0)
        timer.tick(lambda: engine_markdown(engine), None, panel, api_name=False,
                   show_progress="hidden")
        with gr.Tabs():
            for mode in MODES:
                _mode_tab(engine, presets, mode)
            _batch_tab(engine, presets)

        async def generate(mode: str, constraint: str, prompt: str,
                           options: dict[str, Any] | str | None) -> dict[str, Any]:
            return await api_generate(engine, mode, constraint, prompt, options)

        gr.api(generate, api_name="generate", concurrency_limit=None)

        def status() -> dict[str, Any]:
            return engine_status(engine)

        gr.api(status, api_name="status", concurrency_limit=None)
    return demo
