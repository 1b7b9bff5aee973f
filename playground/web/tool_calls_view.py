"""The Tool call tab's parsed calls under a verdict: each call's name, arguments and
errors (with their JSON paths), and the free text outside the calls."""

from __future__ import annotations

import html
import json
from typing import Any

CSS = """
.tool-calls {margin-top:6px} .tool-calls table {border-collapse:collapse;width:100%}
.tool-calls td, .tool-calls th {border:1px solid #e5e7eb;padding:3px 6px;vertical-align:top;
  overflow-wrap:anywhere;text-align:left}
.tool-calls pre {margin:0;white-space:pre-wrap;font-size:0.85em}
.tool-calls .outside {color:#4b5563;font-style:italic}
"""


def calls_html(result: dict[str, Any]) -> str:
    """The calls table of a result with tools (`RunResult.tool_calls`); "" otherwise."""
    found = result.get("tool_calls")
    if not isinstance(found, dict):
        return ""
    calls = found.get("calls") or []
    rows = "".join(_row(call) for call in calls if isinstance(call, dict))
    table = (f"<table><thead><tr><th>#</th><th>tool</th><th>arguments</th><th>errors</th>"
             f"</tr></thead><tbody>{rows}</tbody></table>" if rows
             else '<div class="bad">no tool call</div>')
    outside = str(found.get("text") or "").strip()
    text = (f'<div class="outside">text outside the calls: {html.escape(_short(outside))}</div>'
            if outside else "")
    count = f"{len(calls)} call{'s' if len(calls) != 1 else ''}"
    return (f'<div class="tool-calls" data-calls="{len(calls)}"><small>{count}</small>'
            f"{table}{text}</div>")


def _row(call: dict[str, Any]) -> str:
    errors = [str(error) for error in call.get("errors") or []]
    arguments = call.get("arguments")
    shown = "" if arguments is None else json.dumps(arguments, indent=1, ensure_ascii=False)
    verdict = ("<ul>" + "".join(f"<li>{html.escape(e)}</li>" for e in errors) + "</ul>"
               if errors else '<span class="good">valid</span>')
    return (f'<tr class="tool-call"><td>{html.escape(str(call.get("index", "")))}</td>'
            f'<td class="tool-name">{html.escape(str(call.get("name") or "?"))}</td>'
            f"<td><pre>{html.escape(_short(shown, 2000))}</pre></td><td>{verdict}</td></tr>")


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
