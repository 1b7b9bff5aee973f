"""The Compare tab's handlers (web/compare_tab.py), called directly on the fake engine."""

import asyncio
import html
import json
from pathlib import Path

import pytest

from playground.engines.fake import FakeEngine
from playground.web import compare_tab
from playground.web.compare_tab import (
    VARIANT_FIELDS,
    compare_click,
    compare_stop_click,
    reorder_click,
    rerun_click,
    start_from,
    validate_compare,
)
from playground.web.inflight import Flight
from playground.web.page import run_click

CONTROLS = [16, 0.0, 1.0, 0, "", False, ""]  # as the page sends them
SCHEMA = json.dumps({"type": "object", "properties": {"a": {"type": "string"},
                                                      "b": {"type": "integer"}}})


def variant(mode="choice", constraint="yes\nno", template="{input}", controls=CONTROLS):
    return [mode, constraint, template, *controls]


def flat(*variants, shown=4):
    values = [value for v in variants for value in v]
    return values + variant() * (shown - len(variants))  # the hidden columns' values


def updates(generator):
    async def collect():
        return [update async for update in generator]

    return asyncio.run(collect())


def unescaped(markdown):
    return html.unescape(markdown.replace("\\", ""))


def is_skip(value):
    return type(value).__name__ == "skip" or value == {"__type__": "update"}


def test_run_grid_streams_then_shows_the_grid_its_totals_and_files(fake_engine):
    fake_engine.enqueue("yes", "no", "<b>no</b>", "yes", "no", "yes")
    values = flat(variant(), variant(template="Q: {input}"), variant("regex", r"\w+"))
    shown = updates(compare_click(fake_engine, 3, "one\ntwo", None, *values))
    status, html, files, grid = shown[-1]
    assert status.startswith("Done: grid, 6 cells") and "6 of 6 cells done" in shown[-2][0]
    assert [Path(f).name for f in files] == ["compare.jsonl", "compare.csv",
                                            "compare-history.json"]
    assert grid.cells[0][2].verdict == "invalid" and grid.cells[0][2].constraint_escaped
    assert "&lt;b&gt;no&lt;/b&gt;" in html and "<b>no</b>" not in html  # escaped
    assert html.count("<tr>") == 4  # header, two rows, totals
    assert "1 valid · 1 invalid · 0 truncated · 1 escaped" in html  # column C's totals
    assert "vs A: " in html and "<del>yes</del>" in html
    rows = Path(files[0]).read_text().splitlines()
    assert len(rows) == 6 and json.loads(rows[1])["prompt"] == "Q: one"


@pytest.mark.parametrize(("count", "inputs", "values", "message", "box"), [
    (5, "a", flat(variant()) + variant(), "the grid has 5 variants; the limit is 4", 0),
    (4, "\n".join("abcdefghijk"), flat(), "has 44 cells; the limit is 40", 1),
    (2, "a", flat(variant(), variant(template="no slot")),
     "variant B: template: put {input}", 3 + VARIANT_FIELDS + 2),
    (1, "a", flat(variant("json", "{nope")), "variant A: ", 4),
    (1, "x" * 10_001, flat(), "input 1 has 10,001 characters", 1),
    (1, "\n".join(["a"] * 21), flat(), "the grid has 21 inputs", 1),
    (1, "", flat(), "inputs: give at least one input", 1),
    (1, "a", flat(variant(controls=["many", 0, 1, 0, "", False, ""])),
     "variant A: sampling: max tokens", 4),
    (1, "a", flat(variant(template="{input}" + "x" * 60_000)), "variant A: template", 5),
])
def test_hostile_grids_are_refused_in_one_line_before_the_queue(count, inputs, values,
                                                                message, box):
    answers = validate_compare(count, inputs, None, *values)
    refused = [(index, answer["message"]) for index, answer in enumerate(answers)
               if not answer["is_valid"]]
    assert len(refused) == 1 and message in refused[0][1] and "\n" not in refused[0][1]
    assert refused[0][0] == box
    # The handler itself says the same in one line (a request that skipped the validator).
    status = updates(compare_click(FakeEngine(), count, inputs, None, *values))[-1][0]
    assert message in unescaped(status) and 'class="bad"' in status


def test_a_normal_grid_passes_the_validator():
    answers = validate_compare(3, "a\nb\nc\nd", None, *flat(variant(), variant(), variant()))
    assert all(answer["is_valid"] for answer in answers)


def test_rerun_a_column_or_a_cell_with_the_variant_as_edited(fake_engine):
    fake_engine.enqueue("yes", "yes", "yes", "yes")
    values = flat(variant(), variant())
    *_, (_, _, _, grid) = updates(compare_click(fake_engine, 2, "a\nb", None, *values))
    fake_engine.enqueue("no", "no")
    edited = flat(variant(), variant(template="Say {input}"))
    status, html, files, grid = updates(rerun_click(fake_engine, grid, "B", 0, 2,
                                                    *edited))[-1]
    assert status.startswith("Done: column B, 2 cells")
    assert [row[1].text for row in grid.cells] == ["no", "no"]
    assert fake_engine.requests[-1][0] == "Say b" and len(files) == 3
    fake_engine.enqueue("maybe")
    status, *_ = updates(rerun_click(fake_engine, grid, "A", 2, 2, *edited))[-1]
    assert status.startswith("Done: cell A2, 1 cells")
    assert grid.cells[1][0].verdict == "invalid" and grid.cells[0][0].verdict == "valid"
    # One cell of an edited variant: the column's other cells came from the old one, so
    # every cell runs again (an export credits each output to the variant that made it).
    fake_engine.enqueue("yes", "no")
    edited_a = flat(variant(template="Now {input}"), variant(template="Say {input}"))
    status, *_ = updates(rerun_click(fake_engine, grid, "A", 1, 2, *edited_a))[-1]
    assert status.startswith("Done: column A (its variant was edited: every cell again)")
    assert [prompt for prompt, _, _ in fake_engine.requests[-2:]] == ["Now a", "Now b"]


@pytest.mark.parametrize(("grid", "column", "row", "message"), [
    (None, "A", 0, "re-run: run a grid first"),
    ("grid", "C", 0, "the grid has variants A to B"),
    ("grid", "A", 9, "the grid has rows 1 to 2"),
    ("grid", "A", "x", "give a row number"),
])
def test_rerun_refusals(fake_engine, grid, column, row, message):
    if grid:
        fake_engine.enqueue("yes", "yes", "yes", "yes")
        *_, (_, _, _, grid) = updates(compare_click(fake_engine, 2, "a\nb", None,
                                                    *flat(variant(), variant())))
    status = updates(rerun_click(fake_engine, grid, column, row, 2, *flat()))[-1][0]
    assert message in unescaped(status)


def test_the_rerun_validator_names_the_box(fake_engine):
    fake_engine.enqueue("yes", "yes")
    *_, (_, _, _, grid) = updates(compare_click(fake_engine, 2, "a", None,
                                                *flat(variant(), variant())))
    cases = [(None, "A", 0, flat(), 1, "re-run: run a grid first"),
             (grid, "C", 0, flat(), 1, "the grid has variants A to B"),
             (grid, "A", 5, flat(), 2, "the grid has rows 1 to 1"),
             (grid, "B", 0, flat(variant(), variant(template="none")),
              4 + VARIANT_FIELDS + 2, "variant B: template")]
    for given, column, row, values, box, message in cases:
        answers = compare_tab.validate_rerun(given, column, row, 2, *values)
        refused = [(i, a["message"]) for i, a in enumerate(answers) if not a["is_valid"]]
        assert len(refused) == 1 and refused[0][0] == box and message in refused[0][1]
    assert all(a["is_valid"] for a in compare_tab.validate_rerun(grid, "B", 1, 2, *flat()))


def test_stop_shows_the_grid_with_its_stopped_cell_and_files():
    engine = FakeEngine(delay_s=0.02, concurrent=False)
    engine.load()
    engine.enqueue("yes", " ".join(["w"] * 200))
    flight = Flight()

    async def scenario():
        async def consume():
            async for _ in compare_click(engine, 1, "a\nb\nc", None, *flat(),
                                         flight=flight):
                pass

        task = asyncio.create_task(consume())
        while not (flight.batch and flight.batch.cells[1][0] is not None
                   and flight.batch.cells[1][0].output_tokens >= 3):
            await asyncio.sleep(0.01)
        stop = asyncio.create_task(compare_stop_click(flight))
        task.cancel()
        return await stop

    status, html, files, grid = asyncio.run(scenario())
    assert "Stopped by user" in status and "1 cells finished, 1 stopped" in status
    assert "1 stopped · 1 not run" in html and len(files) == 3
    assert engine.active == 0


def test_a_click_in_another_tab_completes_while_a_grid_runs():
    """The grid's cells share the engine with a click, a few at a time; neither waits for
    the other to end (the page puts the grid in a queue group of its own)."""
    engine = FakeEngine(delay_s=0.01, concurrent=False)
    engine.load()
    engine.enqueue(*[" ".join(["yes"] * 30)] * 12)  # ~0.3 s a cell, ~3 s the grid

    async def scenario():
        grid = asyncio.create_task(collect(compare_click(engine, 1, "\n".join("abcdefghij"),
                                                         None, *flat())))
        while not engine.active:  # a cell is in the engine
            await asyncio.sleep(0.01)
        click = await collect(run_click(engine, "regex", "[a-z ]*", "p", *CONTROLS))
        return click, grid.done(), await grid

    async def collect(generator):
        return [update async for update in generator]

    click, grid_done_first, grid_updates = asyncio.run(scenario())
    assert not grid_done_first and any("badge valid" in str(update[2]) for update in click)
    assert grid_updates[-1][0].startswith("Done: grid")


def test_start_from_a_mode_tab():
    tabs = []
    for mode in ("choice", "regex", "json", "grammar"):
        tabs += [f"{mode} prompt", f"{mode} constraint", *CONTROLS]
    out = start_from("json", "", *tabs)
    assert out[:3] == ["json", "json constraint", "{input}"] and out[-1] == "json prompt"
    assert out[3:10] == CONTROLS
    tabs[18] = "Rate {input} please"  # the JSON tab's prompt holds the slot: the template
    out = start_from("json", "kept", *tabs)
    assert out[2] == "Rate {input} please" and is_skip(out[-1])
    assert all(is_skip(value) for value in start_from("nope", "", *tabs))


def test_reorder_adds_a_variant_with_the_properties_reordered():
    values = flat(variant("json", SCHEMA), variant())
    out = reorder_click(2, "A", "", *values)
    assert out[0] == 3 and "Variant C: variant A" in out[-1]
    column_c = out[1 + 2 * VARIANT_FIELDS:1 + 3 * VARIANT_FIELDS]
    assert list(json.loads(column_c[1])["properties"]) == ["b", "a"]
    assert column_c[0] == "json" and column_c[3:] == CONTROLS
    assert all(is_skip(value) for value in out[1:1 + 2 * VARIANT_FIELDS])


@pytest.mark.parametrize(("count", "source", "order", "message"), [
    (2, "B", "", "variant B is not a JSON Schema"),
    (4, "A", "", "the grid has 4 variants already"),
    (2, "A", "nope", "'nope' is not a property"),
    (1, "C", "", "variant C is not in the grid"),
])
def test_reorder_refusals(count, source, order, message):
    out = reorder_click(count, source, order, *flat(variant("json", SCHEMA), variant()))
    assert message in unescaped(out[-1]) and all(is_skip(value) for value in out[:-1])


def test_columns_shown_follow_the_count():
    shown = compare_tab.shown_columns(3)
    assert [column.visible for column in shown] == [True, True, True, False]
