"""The regex's or grammar's railroad diagram in its tab (playground/doctor/railroad.py),
redrawn as the user edits.

A user's constraint decides how much drawing there is, so it is drawn in a killable worker
process within --diagram-timeout-s (doctor_panel's tools do the same); past a size limit
or the time limit the box shows one line saying which, in place of a diagram.
"""

from __future__ import annotations

import html
import threading
from typing import Any

import gradio as gr
from cachetools import LRUCache

from playground.core import limits
from playground.core.constraints import Mode
from playground.doctor import railroad
from playground.errors import ConstraintError, InputError, WorkerDied, WorkersBusy, WorkTimeout
from playground.judging import workers
from playground.judging.judge import check_sizes

MODES: tuple[Mode, ...] = ("regex", "grammar")
# Wide diagrams scroll inside their box rather than widening the page; railroad's own
# colours, lighter strokes so a rule of many boxes stays legible at 1280 pixels.
CSS = """
.railroad-box {overflow-x:auto;max-height:640px;overflow-y:auto}
.railroad-box svg.railroad-diagram {display:block;margin:4px 0;max-width:none;
  background-color:hsl(30,20%,96%)}
.railroad-box svg.railroad-diagram path {stroke-width:2;stroke:#334155;fill:none}
.railroad-box svg.railroad-diagram text {font:bold 13px monospace;text-anchor:middle;
  fill:#111827}
.railroad-box svg.railroad-diagram text.label {text-anchor:start}
.railroad-box svg.railroad-diagram text.comment {font:italic 12px monospace}
.railroad-box svg.railroad-diagram rect {stroke-width:2;stroke:#334155;fill:#dcfce7}
.railroad-box svg.railroad-diagram g.non-terminal rect {fill:#e0f2fe}
.railroad-box svg.railroad-diagram rect.group-box {stroke:gray;stroke-dasharray:8 4;
  fill:none}
.diagram-note {color:#4b5563}
"""

# Drawn diagrams by (mode, text): a diagram and the check line follow the same edit, and
# a tab opened again redraws nothing. Bounded in characters (one is at most
# --max-diagram-bytes); errors are kept too, but not "busy" or a timeout (the next
# try may draw).
_drawn: LRUCache[tuple[str, str], str] = LRUCache(maxsize=16_000_000, getsizeof=len)
_drawn_lock = threading.Lock()


def diagram_html(mode: str, text: str) -> str:
    """The diagram of the editor's text, or one line saying why there is none."""
    key = (mode, text)
    with _drawn_lock:
        if key in _drawn:
            return _drawn[key]
    shown, keep = _draw(mode, text)
    if keep:
        with _drawn_lock:
            _drawn[key] = shown
    return shown


def _draw(mode: str, text: str) -> tuple[str, bool]:
    """(HTML, whether to keep it)."""
    limit = limits.active()
    try:
        check_sizes(mode, text)  # in place: cheap, and it spares a worker the hopeless
        svg = workers.side_call(railroad.diagram, mode, text, limit,
                                timeout=limit.diagram_timeout_s)
    except (ConstraintError, InputError) as exc:
        return _note(str(exc)), True
    except WorkersBusy as exc:  # before WorkTimeout, its base class
        return _note(f"diagram: {exc}"), False
    except WorkTimeout:
        # Not kept: on a loaded server a normal diagram may miss the limit once.
        return _note(limit.message("diagram_timeout_s")), False
    except WorkerDied:
        return _note("diagram: the worker drawing it ended (out of memory?)"), False
    # railroad escapes every label (tests/doctor/test_railroad.py checks a `</svg>`).
    return f'<div class="railroad-box">{svg}</div>', True


def _note(message: str) -> str:
    return f'<small class="diagram-note">{html.escape(" ".join(message.split()))}</small>'


def diagram_parts(mode: Mode, editor: Any, tab: gr.Tab) -> None:
    """The Diagram accordion of the regex and grammar tabs (none elsewhere), beside the
    results where a wide diagram has room: drawn when the tab is opened, redrawn on each
    edit (the last one only, while typing)."""
    if mode not in MODES:
        return
    with gr.Accordion("Diagram", open=True):
        shown = gr.HTML(elem_id=f"{mode}-diagram", css_template=CSS, js_on_load=None)
    gr.on([tab.select, editor.change], lambda text: diagram_html(mode, text or ""), editor,
          shown, api_name=False, trigger_mode="always_last", show_progress="hidden")
