"""The JSON tab's live trees: each side's partial document, drawn under its output while the
run streams (playground.run.partial_json does the reading and the HTML).

The trees are extra outputs of the JSON tab's Run and Stop events only, so the other tabs'
outputs, which History and Stop fill by position, stay as they were. They are drawn from the
flight's live results at each of the page's updates (PAGE_UPDATE_EVERY_S), not per token.
"""

from __future__ import annotations

import asyncio
from typing import Any

import gradio as gr

from playground.run import partial_json
from playground.run.result import RunResult
from playground.run.streaming import Changes
from playground.web.inflight import Flight

CSS = partial_json.CSS
# Past this many characters (both sides) a redraw goes to a thread, off the event loop: about
# 0.5 ms per 17,000 characters of objects, but 18 ms for 100,000 characters of tiny values.
OFFLOAD_CHARS = 8_000


def tree_parts(mode: str) -> list[gr.components.Component]:
    """The two tree boxes, in the JSON tab only (none in the others)."""
    if mode != "json":
        return []
    with gr.Row():
        return [gr.HTML(elem_id=f"{mode}-constrained-tree"),
                gr.HTML(elem_id=f"{mode}-unconstrained-tree")]


def _trees(results: list[RunResult]) -> tuple[str, str]:
    if len(results) != 2:  # before the run starts, or a click that never reached the model
        return "", ""
    return (partial_json.view_html(results[0], constrained=True),
            partial_json.view_html(results[1], constrained=False))


class Trees:
    """Each update's two tree values: skipped when unchanged, like the other outputs."""

    def __init__(self, flight: Flight, boxes: list[Any]) -> None:
        self.flight, self.on = flight, bool(boxes)
        self.changes = Changes(2, gr.skip())

    async def __call__(self) -> tuple[Any, ...]:
        if not self.on:
            return ()
        # Copies: the run replaces its results on the loop while a thread may read these.
        results = [result.model_copy() for result in self.flight.results]
        if sum(len(result.text) for result in results) > OFFLOAD_CHARS:
            return self.changes(await asyncio.to_thread(_trees, results))
        return self.changes(_trees(results))


def after_stop(flight: Flight | None, boxes: list[Any], shown: tuple[Any, ...]
               ) -> tuple[Any, ...]:
    """The trees once a Stop labelled the results "stopped" (skips where Stop did nothing)."""
    if not boxes:
        return ()
    if all(value == gr.skip() for value in shown):
        return (gr.skip(),) * 2
    return _trees(flight.results if flight is not None else [])
