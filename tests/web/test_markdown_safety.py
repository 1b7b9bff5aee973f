"""Text that reaches a gr.Markdown component from outside (an engine's error, a served
model's name, an uploaded history file, a loaded run's finish reason) is shown as typed:
never a live image or link that makes the browser fetch a URL. Plain handlers, no browser."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

from markdown_it import MarkdownIt

from playground.web import session_panel, side_by_side, status

HOSTILE = "![x](http://host/i.png)"


def assert_inert(markdown: str) -> None:
    html = MarkdownIt("commonmark").render(markdown)  # as gr.Markdown renders it
    assert "<img" not in html and "<a " not in html, html


def engine(**fields: object) -> SimpleNamespace:
    info = SimpleNamespace(name=f"cpu {HOSTILE}", model=HOSTILE, device="cpu",
                           options={"model": HOSTILE})
    values = dict(info=info, progress=(1.0, "ready"), ready=True, load_error=None,
                  health="ok", last_error=None, warning=None,
                  dead_message=lambda: f"died: {HOSTILE}")
    return SimpleNamespace(**{**values, **fields})


def test_the_engine_panel_shows_a_servers_error_and_model_name_as_typed():
    assert_inert(status.engine_markdown(engine(last_error=HOSTILE, warning=HOSTILE)))
    assert_inert(status.engine_markdown(engine(ready=False, load_error=HOSTILE)))
    assert_inert(status.engine_markdown(engine(health="failed")))


def test_a_loaded_runs_text_fields_in_the_metrics_table_are_shown_as_typed():
    side = {"finish_reason": HOSTILE, "engine_timings": {HOSTILE: 0.5}}
    assert_inert(side_by_side.metrics_table(side, side))


def test_an_uploaded_history_files_error_is_shown_as_typed(tmp_path):
    path = tmp_path / "history.json"
    path.write_text(json.dumps({HOSTILE: 1}))
    _, _, message, _, _ = asyncio.run(session_panel.load([], "", None, str(path)))
    assert message, "the file should be refused"
    assert_inert(message)
