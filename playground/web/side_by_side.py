"""Side-by-side views: one click's constrained and unconstrained metrics in one table, and
two runs from the history next to each other. Plain text out (Markdown / HTML)."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from playground.run.history import Run
from playground.run.result import RunResult
from playground.run.token_inspector import INSPECTING, no_strip_reason
from playground.web.markdown_safe import plain

# (key, label, unit): unit "s" seconds, "n" a count, "rate" tokens/s, "" text.
METRICS: list[tuple[str, str, str]] = [
    ("prompt_tokens", "prompt tokens", "n"),
    ("output_tokens", "output tokens", "n"),
    ("latency_s", "total latency", "s"),
    ("ttft_s", "time to first token", "s"),
    ("tokens_per_s", "tokens/s (decode)", "rate"),
    ("compile_s", "grammar compile", "s"),
    ("finish_reason", "finish reason", ""),
]


def _cell(value: Any, unit: str, escape: Callable[[str], str] = html.escape) -> str:
    """`escape`: html.escape for the HTML comparison, plain() for the Markdown table."""
    if value is None or value == "":
        return "–"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "rate":
        return f"{value:.1f}"
    return escape(str(value))  # e.g. a finish reason from a loaded run file


def _difference(left: Any, right: Any, unit: str) -> str:
    """constrained − unconstrained, and for speed their ratio too."""
    if not unit or not isinstance(left, int | float) or not isinstance(right, int | float):
        return "" if unit or left is None or right is None or left == right else "differs"
    delta = left - right
    text = (f"{delta:+.3f} s" if unit == "s" else f"{delta:+.1f}" if unit == "rate"
            else f"{delta:+d}")
    if unit == "rate" and right:
        text += f" (×{left / right:.2f})"
    return text


def metrics_table(constrained: dict[str, Any], unconstrained: dict[str, Any]) -> str:
    """Markdown: a row per metric, a column per side, and their difference."""
    rows = list(METRICS)
    if "inspect_s" in constrained or "inspect_s" in unconstrained:  # only when asked for
        rows.append(("inspect_s", "token inspector (after the run)", "s"))
    timings = {**(unconstrained.get("engine_timings") or {}),
               **(constrained.get("engine_timings") or {})}
    lines = ["| metric | constrained | unconstrained | difference |", "|---|---:|---:|---:|"]
    for key, label, unit in rows:
        left, right = constrained.get(key), unconstrained.get(key)
        cells = [_cell(value, unit, plain) for value in (left, right)]
        if key == "inspect_s":  # "–" read as "no inspection" while it was still running
            cells = ["…" if no_strip_reason(side) == INSPECTING else cell
                     for side, cell in zip((constrained, unconstrained), cells, strict=True)]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | "
                     f"{_difference(left, right, unit)} |")
    for name in timings:
        left = (constrained.get("engine_timings") or {}).get(name)
        right = (unconstrained.get("engine_timings") or {}).get(name)
        # Timing names come from the engine, or from a loaded run file: shown as typed.
        lines.append(f"| engine: {plain(name)} | {_cell(left, 's')} | {_cell(right, 's')} | "
                     f"{_difference(left, right, 's')} |")
    return "\n".join(lines)


# ---- two runs --------------------------------------------------------------------------


def _pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>" if text else "<em>(empty)</em>"


def _side_rows(label: str, a: RunResult, b: RunResult) -> list[tuple[str, str, str, bool]]:
    rows = [(f"{label} output", _pre(a.text), _pre(b.text), a.text != b.text),
            (f"{label} verdict", html.escape(a.verdict), html.escape(b.verdict),
             a.verdict != b.verdict)]
    for key, name, unit in METRICS:
        left, right = getattr(a, key), getattr(b, key)
        rows.append((f"{label} {name}", _cell(left, unit), _cell(right, unit),
                     bool(unit == "" and left != right)))
    return rows


def compare_runs(a: Run, b: Run) -> str:
    """HTML: what two runs asked for and what they got, differing rows marked."""
    rows: list[tuple[str, str, str, bool]] = [
        ("mode", a.mode, b.mode, a.mode != b.mode),
        ("prompt", _pre(a.prompt), _pre(b.prompt), a.prompt != b.prompt),
        ("constraint", _pre(a.constraint), _pre(b.constraint), a.constraint != b.constraint),
    ]
    settings_a, settings_b = a.settings.model_dump(), b.settings.model_dump()
    rows += [(f"setting: {key}", html.escape(repr(settings_a[key])),
              html.escape(repr(settings_b[key])), settings_a[key] != settings_b[key])
             for key in settings_a]
    rows += _side_rows("constrained", a.constrained, b.constrained)
    rows += _side_rows("unconstrained", a.unconstrained, b.unconstrained)
    body = "".join(
        f'<tr{" class=differs" if differs else ""}><th>{html.escape(name)}</th>'
        f"<td>{left}</td><td>{right}</td></tr>"
        for name, left, right, differs in rows)
    return (f'<table class="compare"><thead><tr><th></th><th>run #{a.id} ({a.mode})</th>'
            f"<th>run #{b.id} ({b.mode})</th></tr></thead><tbody>{body}</tbody></table>")
