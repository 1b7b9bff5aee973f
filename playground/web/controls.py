"""What every tab shares: the model queue's settings, the constraint editor, the sampling
controls and their conversion to request options."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from playground.core.constraints import Mode
from playground.core.settings import SamplingSettings
from playground.engines.base import Engine
from playground.errors import InputError
from playground.run.service import check_before_queue

# Every event that runs the model waits in this one Gradio queue group, limited to what the
# engine can run at once; users past it see their place in the queue.
ENGINE_QUEUE = "engine"
# How often /generate sends a partial result (each carries the whole text so far).
API_UPDATE_EVERY_S = 0.5
# The page gets at most 5 updates a second (and always the last): drawing every token
# took the cores from the CPU model (see playground/run/streaming.py). Measured on 2 cores
# (bench --browser, page/API decode speed): every token 0.43, 10 a second 0.77-0.81,
# 5 a second 0.81-0.84.
PAGE_UPDATE_EVERY_S = 0.2
# Model events show Gradio's queue position and spinner but not its "full" progress: that
# pulses a border on every output, forever, while a run streams, and a browser without a
# GPU repaints it 60 times a second on the model's cores.
PROGRESS = "minimal"


def options_from_controls(max_tokens: float, temperature: float, top_p: float,
                          seed: float | None, stop_text: str, chat_template: bool,
                          system_prompt: str) -> dict[str, Any]:
    try:
        numbers = {"max_tokens": int(max_tokens), "temperature": float(temperature),
                   "top_p": float(top_p), "seed": None if seed in (None, "") else int(seed)}
    except (TypeError, ValueError, OverflowError):
        raise InputError("sampling: max tokens, temperature, top-p and seed must be numbers"
                         ) from None
    return {**numbers, "stop": [_stop_string(number, line) for number, line in
                                enumerate((stop_text or "").splitlines(), start=1) if line],
            "chat_template": bool(chat_template), "system_prompt": system_prompt or ""}

def _stop_string(number: int, line: str) -> str:
    """A stop line as typed, with JSON's escapes (\\n, \\t, \\u0041) read."""
    if "\\" not in line:
        return line
    try:
        return json.loads(f'"{line}"')
    except json.JSONDecodeError:
        raise InputError(f"stop strings: line {number}: {line[:40]!r} has an escape that is not "
                         r'one of \n \t \r \" \\ \uXXXX (write \\ for a backslash)') from None

def controls_from_settings(settings: SamplingSettings) -> list[Any]:
    stops = [json.dumps(stop)[1:-1] for stop in settings.stop]  # "\n" shows as \n
    return [settings.max_tokens, settings.temperature, settings.top_p, settings.seed,
            "\n".join(stops), settings.chat_template, settings.system_prompt]

def engine_ready(engine: Engine | None) -> bool:
    return engine is not None and engine.ready

def constraint_editor(mode: Mode, value: str) -> gr.components.Component:
    if mode == "json":
        return gr.Code(value=value, language="json", label="JSON Schema", lines=14,
                       elem_id=f"{mode}-constraint")
    if mode == "tool":
        return gr.Code(value=value, language="json", label="Tools and tool_choice", lines=16,
                       elem_id=f"{mode}-constraint")
    if mode == "grammar":
        return gr.Code(value=value, language=None, label="Lark grammar", lines=12,
                       elem_id=f"{mode}-constraint")
    label = "Choices (one per line)" if mode == "choice" else "Regex"
    return gr.Textbox(value=value, label=label, lines=5 if mode == "choice" else 1,
                      elem_id=f"{mode}-constraint")

def sampling_controls(defaults: SamplingSettings) -> list[gr.components.Component]:
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


def refusal(check: Callable[[], None], inputs: int, where: Callable[[str], int]
            ) -> list[Any]:
    """A Gradio validator's answer: one gr.validate per input, the error (if `check`
    raises one) on the input `where` names for its message.

    A validator runs when the request joins the queue (HTTP 422 with the message), so a
    request that will be refused never waits behind other users' runs."""
    answers = [gr.validate(True, "") for _ in range(inputs)]
    try:
        check()
    except InputError as exc:
        answers[where(str(exc))] = gr.validate(False, str(exc))
    return answers


def api_input_for(message: str) -> int:
    """/generate's inputs: mode, constraint, prompt, options."""
    return next((index for index, name in ((2, "prompt"), (3, "options"), (0, "mode: "))
                 if message.startswith(name)), 1)


def validate_api(mode: Any, constraint: Any, prompt: Any, options: Any) -> list[Any]:
    return refusal(lambda: check_before_queue(mode, constraint, prompt, options), 4,
                   api_input_for)


# The sampling controls' option names, in the order sampling_controls lays them out.
CONTROL_OPTIONS = ("max_tokens", "temperature", "top_p", "seed", "stop", "chat_template",
                   "system_prompt")


def validate_click(first_control: int = 3, controls: Sequence[str] = CONTROL_OPTIONS
                   ) -> Callable[..., list[Any]]:
    """The validator of a tab's Run: inputs (mode, editor, prompt, *controls, ...); an
    error about the options goes on the control it names (stop, system prompt), else on
    the first."""

    def where(message: str) -> int:
        if message.startswith("prompt"):
            return 2
        if message.startswith(("options", "sampling", "stop")):
            named = [i for i, name in enumerate(controls) if name in message]
            return first_control + (named[0] if named else 0)
        return 1

    def validate(mode: str, constraint: str, prompt: str, *values: Any) -> list[Any]:
        def check() -> None:
            options = options_from_controls(*values[:len(controls)])
            check_before_queue(mode, constraint, prompt, options)
        return refusal(check, 3 + len(values), where)

    return validate
