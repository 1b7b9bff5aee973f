"""A JSON document as it is being written: the partial tree so far, and where a text stops
being JSON. The page's JSON tab redraws it five times a second while a run streams
(playground.web.json_tree_view), so each call is bounded and linear in the text.

Two jiter parses: a strict one, whose error says where the text left JSON ("EOF while
parsing ..." means the text is a valid prefix so far), and a partial one of the valid part,
which gives the tree. jiter's partial mode alone is lenient after an error (`{"a": 1 x`
reads as {"a": 1}), so it cannot say where the format was left.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import jiter

from playground.run.result import RunResult

# Bounds on one redraw, for a huge or hostile output (measured on the 2-core machine: a
# 16,000-character, 4,000-token document reads and draws in well under 2 ms). Past them the
# tree says how much it left out.
MAX_PARSE_CHARS = 40_000  # characters read (~10,000 tokens); the rest is not looked at
MAX_TREE_NODES = 400  # values drawn; then "… (N more)" in each container cut short
MAX_TREE_DEPTH = 24  # levels drawn; a deeper container is shown folded as "{…}" / "[…]"
MAX_STRING_CHARS = 160  # characters of one string drawn
EXCERPT_CHARS = 40  # characters shown around the place a text left JSON

_POSITION = re.compile(r" at line (\d+) column (\d+)$")


@dataclass(frozen=True)
class Shape:
    """What a text is, read as JSON."""

    value: Any = None
    has_value: bool = False  # anything parsed at all (an empty prefix has nothing)
    complete: bool = False  # exactly one whole document (whitespace around it allowed)
    left_at: int | None = None  # the character where the text stops being JSON
    reason: str = ""  # jiter's message, without its position
    too_deep: bool = False  # nested past jiter's recursion limit: not drawn
    read_chars: int = 0  # characters read: at most MAX_PARSE_CHARS
    total_chars: int = 0


def _char_index(data: bytes, line: int, column: int) -> int:
    """jiter's (line, byte column) position as a character index into the decoded text."""
    start = 0
    for _ in range(line - 1):
        start = data.index(b"\n", start) + 1
    offset = min(len(data), start + max(column - 1, 0))
    return len(data[:offset].decode("utf-8", errors="ignore"))


def _strict_error(data: bytes) -> ValueError | None:
    try:
        jiter.from_json(data, cache_mode="none", allow_inf_nan=False)
    except ValueError as exc:
        return exc
    return None


def read(text: str) -> Shape:
    """The tree of `text` (its first MAX_PARSE_CHARS characters), and where it left JSON."""
    head = text[:MAX_PARSE_CHARS]
    cut = len(head) < len(text)
    data = head.encode("utf-8", errors="replace")
    sizes = {"read_chars": len(head), "total_chars": len(text)}
    error = _strict_error(data)
    left_at, reason = None, ""
    if error is not None:
        message = str(error)
        found = _POSITION.search(message)
        reason = _POSITION.sub("", message)
        if message.startswith("recursion limit"):
            return Shape(too_deep=True, reason=reason, **sizes)
        if not message.startswith("EOF") and found:
            left_at = _char_index(data, int(found[1]), int(found[2]))
    valid = data if left_at is None else head[:left_at].encode("utf-8", errors="replace")
    if reason == "EOF while parsing a value":
        # A number cut after its digits ("-1500.", "1e+"): partial mode drops it, and the
        # tree would shrink for a frame; its digits so far are shown instead.
        valid = valid.rstrip(b".eE+-")
    try:
        value = jiter.from_json(valid, partial_mode="trailing-strings", cache_mode="none",
                                allow_inf_nan=False)
    except ValueError:  # nothing parsed yet: empty, or the text left JSON at once
        return Shape(left_at=left_at, reason=reason, **sizes)
    return Shape(value=value, has_value=True, complete=error is None and not cut,
                 left_at=left_at, reason=reason, **sizes)


# ---- drawing ---------------------------------------------------------------------------

CSS = """
.jt-status {margin:4px 0;font-size:0.9em}
.jt-tree {font-family:ui-monospace,monospace;font-size:0.85em;max-height:24em;overflow:auto}
.jt-tree ul, .jt-tree li {font-size:inherit}
.jt-tree ul {list-style:none;margin:0;padding-left:1.2em;border-left:1px dotted #9ca3af}
.jt-tree > ul {padding-left:0;border-left:none}
.jt-key {color:#7c3aed} .jt-str {color:#15803d} .jt-num {color:#1d4ed8}
.jt-lit {color:#b45309} .jt-more {color:#6b7280;font-style:italic}
.jt-open {background:#fef3c7;border-radius:3px}
.jt-open::after {content:" \\270e writing";color:#b45309;font-size:0.8em}
.jt-excerpt {background:#fee2e2;font-family:ui-monospace,monospace}
"""


class _Budget:
    def __init__(self, nodes: int) -> None:
        self.nodes = nodes


def _leaf(value: Any) -> str:
    if isinstance(value, str):
        shown = value[:MAX_STRING_CHARS]
        more = len(value) - len(shown)
        tail = f'<span class="jt-more">… ({more:,} more characters)</span>' if more else ""
        return f'<span class="jt-str">"{html.escape(shown)}"</span>{tail}'
    if isinstance(value, bool) or value is None:
        return f'<span class="jt-lit">{"null" if value is None else str(value).lower()}</span>'
    digits = str(value)
    if len(digits) > MAX_STRING_CHARS:  # a huge integer: its length, not its digits
        digits = f"{digits[:20]}… ({len(digits):,} digits)"
    return f'<span class="jt-num">{html.escape(digits)}</span>'


def _node(label: str, value: Any, depth: int, budget: _Budget, open_path: bool) -> str:
    """One value as an <li>; `open_path`: it is the last value on the document's right edge,
    where a partial text is still being written."""
    budget.nodes -= 1
    if not isinstance(value, dict | list):
        mark = ' class="jt-open"' if open_path else ""
        return f"<li><span{mark}>{label}{_leaf(value)}</span></li>"
    brackets = "{}" if isinstance(value, dict) else "[]"
    noun = ("key" if brackets == "{}" else "item") + ("" if len(value) == 1 else "s")
    count = f'<span class="jt-more"> {len(value):,} {noun}</span>'
    if depth >= MAX_TREE_DEPTH or not value:
        inner = "…" if value else ""
        mark = ' class="jt-open"' if open_path and not value else ""
        return f"<li><span{mark}>{label}{brackets[0]}{inner}{brackets[1]}</span>{count}</li>"
    items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
    rows = []
    for position, (key, child) in enumerate(items):
        if budget.nodes <= 0:
            rows.append(f'<li class="jt-more">… ({len(items) - position:,} more)</li>')
            break
        key_html = (f'<span class="jt-key">"{html.escape(key[:MAX_STRING_CHARS])}"</span>: '
                    if isinstance(key, str) else "")
        last = open_path and position == len(items) - 1
        rows.append(_node(key_html, child, depth + 1, budget, last))
    return f"<li>{label}{brackets[0]}{count}<ul>{''.join(rows)}</ul>{brackets[1]}</li>"


def tree_html(shape: Shape) -> str:
    """The parsed tree as nested lists, escaped; the last value marked while the text is
    not yet a whole document."""
    if shape.too_deep:
        return '<div class="jt-tree jt-more">nested too deeply to draw</div>'
    if not shape.has_value:
        return ""
    body = _node("", shape.value, 0, _Budget(MAX_TREE_NODES), not shape.complete)
    note = ""
    if shape.read_chars < shape.total_chars:
        note = (f'<div class="jt-more">the first {shape.read_chars:,} of '
                f"{shape.total_chars:,} characters</div>")
    return f'<div class="jt-tree"><ul>{body}</ul>{note}</div>'


def excerpt(text: str, at: int) -> str:
    """A few characters either side of `at`, escaped, the character at `at` highlighted."""
    before = text[max(0, at - EXCERPT_CHARS):at]
    after = text[at + 1:at + 1 + EXCERPT_CHARS]
    here = text[at:at + 1] or "(end)"
    return (html.escape(before) + f'<span class="jt-excerpt">{html.escape(here)}</span>'
            + html.escape(after)).replace("\n", "⏎")


_VERDICTS = {"valid": ("good", "valid: fits the schema"),
             "invalid": ("bad", "invalid: does not fit the schema"),
             "truncated": ("warn", "truncated: cut before the document ended"),
             "error": ("bad", "engine error"), "stopped": ("warn", "stopped by user"),
             "unjudged": ("warn", "unjudged (validation limit)")}


def status_html(result: RunResult, shape: Shape, constrained: bool) -> str:
    """One line: the constrained side's viability (the engine keeps every token inside the
    schema, so it stays viable while it streams) or where the free side left JSON; then the
    verdict once the run is done."""
    parts = []
    if shape.left_at is not None:
        parts.append(f'<span class="bad">left JSON at character {shape.left_at:,}</span> '
                     f"({html.escape(shape.reason)}): {excerpt(result.text, shape.left_at)}")
    elif shape.too_deep:
        parts.append('<span class="warn">nested past the parser\'s depth limit</span>')
    elif result.text.strip():
        parts.append('<span class="good">a whole JSON document</span>' if shape.complete
                     else "valid JSON so far")
    if result.verdict == "running":
        if constrained:
            parts.insert(0, '<span class="good">● still viable</span> (the engine allows '
                            "only tokens the schema can continue)")
    else:
        css, label = _VERDICTS.get(result.verdict, ("warn", result.verdict))
        if result.constraint_escaped:
            css, label = "bad", "escaped: the engine did not enforce the schema"
        parts.insert(0, f'<span class="{css}">{html.escape(label)}</span>')
    return '<div class="jt-status">' + " · ".join(parts) + "</div>"


def view_html(result: RunResult | None, constrained: bool) -> str:
    """The status line and the tree of one side (empty before the run has a result)."""
    if result is None or (result.verdict == "running" and not result.text):
        return ""
    shape = read(result.text)
    line = status_html(result, shape, constrained)
    start = _embedded_start(result.text) if shape.left_at == 0 else None
    if start is None:
        return line + tree_html(shape)
    inner = read(result.text[start:])
    if inner.left_at is not None:
        how = f"; it leaves JSON at character {start + inner.left_at:,}"
    else:
        how = ": a whole document" if inner.complete else ", valid so far"
    return (line + f'<div class="jt-status">a JSON value starts at character {start:,}{how}'
            "</div>" + tree_html(inner))


def _embedded_start(text: str) -> int | None:
    """Where an object or array starts after some prose (a free model's "Here is the
    JSON:"), so its tree is shown too."""
    head = text[:MAX_PARSE_CHARS]
    found = [at for at in (head.find("{"), head.find("[")) if at > 0]
    return min(found) if found else None
