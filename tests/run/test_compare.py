"""The Compare tab's grid (run/compare.py) and the property-order helper
(core/property_order.py), on the fake engine."""

import asyncio
import contextlib
import csv
import io
import json
import time

import pytest

from playground.core import limits
from playground.core.property_order import parse_order, property_names, reorder_properties
from playground.engines.fake import FakeEngine
from playground.errors import InputError, LimitError
from playground.run import compare, history
from playground.run.compare import Grid, Variant

OPTIONS = {"max_tokens": 16, "temperature": 0.0, "seed": 0}
SCHEMA = json.dumps({"type": "object", "properties": {"answer": {"type": "string"},
                                                      "reason": {"type": "string"},
                                                      "score": {"type": "integer"}},
                     "required": ["answer", "reason"]})


def choice(template: str = "{input}") -> Variant:
    return Variant("choice", "yes\nno", template, dict(OPTIONS))


@contextlib.contextmanager
def time_limit(seconds: float):
    """The grid's time limit (--batch-timeout-s) set for one test."""
    previous = limits.active()
    limits.configure(limits.Limits(batch_timeout_s=seconds))
    try:
        yield
    finally:
        limits.configure(previous)


def run(engine, grid, cells=None):
    return asyncio.run(compare.run_grid_to_end(engine, grid, cells))


def test_a_grid_runs_every_cell_and_counts_each_column(fake_engine):
    # Row by row: (A, B, C) for input 1, then input 2.
    fake_engine.enqueue("yes", "yes", "maybe", "no", "yes", "no")
    grid = Grid([choice(), choice("Q: {input}"), Variant("regex", r"\w+", "{input}!",
                                                          dict(OPTIONS))], ["a?", "b?"])
    run(fake_engine, grid)
    assert [[cell.verdict for cell in row] for row in grid.cells] == [
        ["valid", "valid", "valid"], ["valid", "valid", "valid"]]
    assert [prompt for prompt, _, _ in fake_engine.requests] == [
        "a?", "Q: a?", "a?!", "b?", "Q: b?", "b?!"]
    fake_engine.enqueue("maybe", "no")
    run(fake_engine, grid, [(0, 0), (1, 0)])  # column A again: one cell escapes
    totals = grid.totals(0)
    assert (totals["valid"], totals["invalid"], totals["escaped"], totals["not_run"]) == (
        1, 1, 1, 0)
    assert totals["mean_tokens"] == 1 and totals["mean_latency_s"] > 0


@pytest.mark.parametrize(("first", "other", "expected"), [
    ("same text", "same text", ["same as the first column"]),
    ("the cat sat", "the dog sat", ["<del>cat</del>", "<ins>dog</ins>", "the "]),
    ("a", "a <b>", ["a<ins> &lt;b&gt;</ins>"]),  # escaped, never markup
    ("", "new", ["<ins>new</ins>"]),
])
def test_the_diff_against_the_first_column(first, other, expected):
    shown = compare.diff_html(first, other)
    assert all(part in shown for part in expected) and "<b>" not in shown


@pytest.mark.parametrize("words", [("x ", "y "), ('{"a": 1, ', '{"b": 2, ')])
def test_a_long_diff_compares_its_first_words_only_and_quickly(words):
    start = time.perf_counter()
    shown = compare.diff_html(words[0] * 5000, words[1] * 5000)
    assert "first 2,000 words compared" in shown and time.perf_counter() - start < 0.5


def test_exports_hold_every_cell_and_load_back_as_history_runs(fake_engine, tmp_path):
    fake_engine.enqueue("yes", "no", "no", "no")
    grid = Grid([choice(), choice("Say {input}")], ["one", "two"])
    run(fake_engine, grid)
    rows = [json.loads(line) for line in compare.to_jsonl(grid).splitlines()]
    assert [(r["row"], r["variant"], r["text"], r["same_as_first"]) for r in rows] == [
        (1, "A", "yes", True), (1, "B", "no", False), (2, "A", "no", True),
        (2, "B", "no", True)]
    assert rows[1]["prompt"] == "Say one" and rows[1]["template"] == "Say {input}"
    table = list(csv.DictReader(io.StringIO(compare.to_csv(grid))))
    assert [row["verdict"] for row in table] == ["valid"] * 4
    loaded = history.loads(compare.to_history(grid, fake_engine.info.as_dict()))
    assert loaded.kind == "run" and [r.id for r in loaded.runs] == [1, 2, 3, 4]
    assert loaded.runs[1].prompt == "Say one" and loaded.runs[1].constrained.text == "no"
    assert loaded.runs[0].unconstrained.errors == [compare.NOT_RUN]


def test_a_stopped_grid_labels_the_cells_in_the_engine_and_leaves_the_rest():
    engine = FakeEngine(delay_s=0.02, concurrent=False)
    engine.load()
    engine.enqueue("yes", " ".join(["w"] * 200))
    grid = Grid([choice()], ["a", "b", "c"])

    async def scenario() -> None:
        async def consume() -> None:
            async for _ in compare.run_grid(engine, grid):
                pass

        task = asyncio.create_task(consume())
        while not (grid.cells[1][0] is not None and grid.cells[1][0].output_tokens >= 3):
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert [cell and cell.verdict for row in grid.cells for cell in row] == [
        "valid", "stopped", None]
    assert engine.active == 0
    assert grid.totals(0)["not_run"] == 1 and grid.totals(0)["stopped"] == 1


def test_cells_run_a_few_at_a_time():
    engine = FakeEngine(delay_s=0.01)
    engine.load()
    seen = []
    stream = engine.stream

    async def counted(*args, **kwargs):
        seen.append(engine.active)
        async for chunk in stream(*args, **kwargs):
            yield chunk

    engine.stream = counted
    engine.enqueue(*["yes"] * 20)
    run(engine, Grid([choice()] * 4, [str(i) for i in range(5)]))
    assert max(seen) < compare.cells_at_once(engine) == 8


def test_a_grid_past_its_time_limit_says_so(fake_engine):
    fake_engine.hold = True
    grid = Grid([choice()], ["a", "b"])
    try:
        with time_limit(0.2):
            run(fake_engine, grid)
    finally:
        fake_engine.hold = False
    assert "the grid took longer than 0.2 s" in grid.note
    assert grid.cells[0][0].verdict == "stopped"
    assert "the grid's time limit" in grid.cells[0][0].errors[0]


def test_cells_cut_while_judged_are_stopped_not_running(fake_engine, monkeypatch):
    """A cell past its stream (being judged) when the grid's time runs out."""
    from playground.run import service

    async def slow_judge(*_, **__):
        await asyncio.sleep(5)

    monkeypatch.setattr(service, "judge", slow_judge)
    fake_engine.enqueue("yes", "no")
    grid = Grid([choice()], ["a", "b"])
    with time_limit(0.3):
        run(fake_engine, grid)
    assert [row[0].verdict for row in grid.cells] == ["stopped", "stopped"]
    assert grid.totals(0)["finished"] == 2
    assert all("the grid's time limit" in row[0].errors[0] for row in grid.cells)


def test_csv_cells_a_spreadsheet_would_run_stay_text(fake_engine):
    import csv
    import io

    fake_engine.enqueue("yes")
    grid = Grid([choice()], ['=HYPERLINK("http://x","y")'])
    run(fake_engine, grid)
    row = next(csv.DictReader(io.StringIO(compare.to_csv(grid))))
    assert row["input"] == "'=HYPERLINK(\"http://x\",\"y\")" and row["text"] == "yes"
    assert json.loads(compare.to_jsonl(grid))["input"].startswith("=")  # JSONL as it was


@pytest.mark.parametrize(("variants", "inputs", "message"), [
    ([choice()] * 5, ["a"], "the grid has 5 variants; the limit is 4"),
    ([choice()] * 3, ["a"] * 14, "the grid (3 variants × 14 inputs) has 42 cells"),
    ([choice("no slot")], ["a"], "variant A: template: put {input} where"),
    ([choice("{input}\x00")], ["a"], "variant A: template: character 8 is a NUL"),
    ([Variant("choice", "", "{input}", OPTIONS)], ["a"], "variant A: "),
    ([choice(), Variant("json", "{bad", "{input}", OPTIONS)], ["a"], "variant B: "),
    ([choice(), Variant("regex", "x", "{input}", {"max_tokens": -1})], ["a"],
     "variant B: options: max_tokens"),
    ([choice("{input}" * 2)], ["x" * 9_000] * 3, "variant A: the prompt has 18,000"),
    ([Variant("choice", "a", "{input}", {"max_tokens": 8192})] * 4, ["a"] * 10,
     "the grid (prompts plus max tokens"),
])
def test_a_grid_is_refused_in_one_line(variants, inputs, message):
    previous = limits.active()
    limits.configure(limits.Limits(max_prompt_chars=10_000))
    try:
        with pytest.raises(InputError) as caught:
            compare.check_grid(variants, inputs)
    finally:
        limits.configure(previous)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("text", "content", "suffix", "expected"), [
    ("one\n\n two \n", None, None, ["one", " two "]),
    ("box", '"x"\n{"input": "y"}\n{"prompt": "z"}\n', ".jsonl", ["x", "y", "z"]),
    ("box", "p\nq\n", ".txt", ["p", "q"]),
])
def test_parse_inputs(tmp_path, text, content, suffix, expected):
    path = None
    if content is not None:
        path = tmp_path / f"inputs{suffix}"
        path.write_text(content)
    assert compare.parse_inputs(text, path) == expected


@pytest.mark.parametrize(("text", "content", "message"), [
    ("", None, "inputs: give at least one input"),
    ("\n".join(["a"] * 21), None, "the grid has 21 inputs; the limit is 20"),
    ("x" * 10_001, None, "input 1 has 10,001 characters"),
    ("ok\n\ud800", None, "lone surrogate"),
    (None, "{bad\n", "inputs.jsonl: line 1: not JSON"),
    (None, '{"text": 1}\n', 'give a string or {"input"'),
])
def test_bad_inputs_get_one_line(tmp_path, text, content, message):
    path = None
    if content is not None:
        path = tmp_path / "inputs.jsonl"
        path.write_text(content)
    with pytest.raises(InputError, match=None) as caught:
        compare.parse_inputs(text, path)
    assert message in str(caught.value)


def test_a_prompt_past_the_models_context_is_that_cells_error(fake_engine):
    fake_engine.context_length = 5
    fake_engine.count_prompt_tokens = lambda prompt, settings: len(prompt)
    fake_engine.enqueue("yes")
    grid = Grid([Variant("choice", "yes\nno", "{input}", {"max_tokens": 2})],
                ["ab", "a long one"])
    run(fake_engine, grid)
    assert grid.cells[0][0].verdict == "valid"
    assert grid.cells[1][0].verdict == "error" and "context" in grid.cells[1][0].errors[0]


# ---- property order -------------------------------------------------------------------


@pytest.mark.parametrize(("order", "names", "required"), [
    (None, ["score", "reason", "answer"], ["reason", "answer"]),
    (["reason"], ["reason", "answer", "score"], ["reason", "answer"]),
    (["score", "answer", "reason"], ["score", "answer", "reason"], ["answer", "reason"]),
])
def test_reorder_properties(order, names, required):
    reordered = reorder_properties(SCHEMA, order)
    assert property_names(reordered) == names
    assert json.loads(reordered)["required"] == required
    # Only the order changed.
    assert json.loads(reordered)["properties"] == json.loads(SCHEMA)["properties"]


@pytest.mark.parametrize(("schema", "order", "message"), [
    (SCHEMA, ["nope"], "'nope' is not a property"),
    (SCHEMA, ["answer", "answer"], "named twice"),
    ('{"type": "string"}', None, "two or more top-level"),
    ("{bad", None, "not JSON"),
    ("[1]", None, "not an object"),
    ("[" * 100_000, None, "nested too deeply"),
    (" " * 100_001, None, "--max-constraint-chars"),
], ids=range(7))
def test_reorder_refusals(schema, order, message):
    with pytest.raises((InputError, LimitError), match=message):
        reorder_properties(schema, order)


def test_parse_order():
    assert parse_order(" b, a\nc ,") == ["b", "a", "c"]
    assert parse_order("  ") is None
