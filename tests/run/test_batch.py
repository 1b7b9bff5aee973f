import asyncio
import csv
import io
import json
from typing import get_args

import pytest

from playground.errors import InputError
from playground.run import batch
from playground.run.result import RunResult, RunStatus
from playground.web import batch_tab
from playground.web.batch_tab import batch_click


def run_to_end(engine, mode, constraint, prompts, options=None):
    return asyncio.run(batch.run_batch_to_end(engine, mode, constraint, prompts, options))


def test_batch_totals_and_exports(fake_engine):
    fake_engine.enqueue("yes", "maybe", "no")
    result = run_to_end(fake_engine, "choice", "yes\nno", ["a?", "b?", "c?"])
    assert [r.verdict for r in result.results] == ["valid", "invalid", "valid"]
    totals = result.totals
    assert (totals["prompts"], totals["valid"], totals["invalid"]) == (3, 2, 1)
    assert totals["validity_rate"] == pytest.approx(2 / 3)
    assert totals["wall_s"] > 0 and totals["tokens_per_s"] > 0
    rows = [json.loads(line) for line in batch.to_jsonl(result).splitlines()]
    assert [r["prompt"] for r in rows] == ["a?", "b?", "c?"]
    table = list(csv.DictReader(io.StringIO(batch.to_csv(result))))
    assert table[1]["verdict"] == "invalid" and "not one of" in table[1]["errors"]


def test_the_exports_columns_and_totals_are_the_result_models():
    """Every status a finished run can have is counted; every column is a result field."""
    assert set(batch.TOTALS) == set(get_args(RunStatus)) - {"running"}
    assert set(batch.COLUMNS[2:]) <= set(RunResult.model_fields)


@pytest.mark.parametrize(
    ("text", "content", "suffix", "expected"),
    [
        ("one\n\ntwo\n", None, None, ["one", "two"]),
        ("", "x\ny\n", ".txt", ["x", "y"]),
        # A file replaces the box's prompts (the box holds a preset's prompt from the start).
        ("first", '{"prompt": "p1"}\n"p2"\n', ".jsonl", ["p1", "p2"]),
        ("box prompt", "x\ny\nz\n", ".txt", ["x", "y", "z"]),
    ],
)
def test_parse_prompts(tmp_path, text, content, suffix, expected):
    path = None
    if content is not None:
        path = tmp_path / f"prompts{suffix}"
        path.write_text(content)
    assert batch.parse_prompts(text, path) == expected


@pytest.mark.parametrize(
    ("content", "message"),
    [("{bad\n", "line 1: not JSON"), ('{"text": 1}\n', "line 1: give a string")],
)
def test_bad_prompt_files_say_which_line(tmp_path, content, message):
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        batch.parse_prompts("", path)


def test_no_prompts_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="at least one prompt"):
        batch.parse_prompts("\n \n")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(InputError, match="empty.txt: no prompts in the file"):
        batch.parse_prompts("a box prompt", empty)


def test_batch_click_says_a_file_replaced_the_box(fake_engine, tmp_path):
    fake_engine.enqueue("1", "2", "3")
    path = tmp_path / "three.txt"
    path.write_text("a\nb\nc\n")

    async def go():
        return [u async for u in batch_click(fake_engine, "regex", r"\d", "box prompt",
                                             str(path), 16, 0.0, 1.0, 0, "", True, "")]

    status, table, _, _ = asyncio.run(go())[-1]
    assert status.startswith("Done: 3 prompts of three\\.txt")
    assert [row[1] for row in table] == ["a", "b", "c"]
    assert batch_tab.prompts_box(str(path)).interactive is False
    assert batch_tab.prompts_box(None).interactive is True


def test_batch_click_streams_progress_then_totals_and_files(fake_engine):
    fake_engine.enqueue("1", "2")
    controls = (16, 0.0, 1.0, 0, "", True, "")

    async def go():
        return [u async for u in batch_click(fake_engine, "regex", r"\d", "a\nb", None,
                                             *controls)]

    updates = asyncio.run(go())
    status, table, totals, files = updates[-1]
    assert status.startswith("Done: 2 prompts")
    assert [row[3] for row in table] == ["valid", "valid"]
    assert "**Validity:** 100%" in totals
    assert [f.rsplit(".", 1)[1] for f in files] == ["jsonl", "csv"]


@pytest.mark.slow
def test_batch_on_the_embedded_model(embedded_engine):
    prompts = ["Is the sky blue?", "Is fire cold?", "Is water wet?"]
    result = run_to_end(embedded_engine, "choice", "yes\nno", prompts, {"max_tokens": 8})
    assert result.totals["finished"] == 3
    assert all(r.verdict in {"valid", "truncated"} for r in result.results)


@pytest.mark.parametrize("concurrent", [False, True])
def test_a_batch_past_its_time_limit_leaves_the_rest_not_run(concurrent):
    """One user's batch never holds the model slot for long (the CPU model has one)."""
    from playground.core.limits import Limits, configure
    from playground.engines.fake import FakeEngine

    engine = FakeEngine(delay_s=0.2, concurrent=concurrent)
    engine.load()
    engine.enqueue(*(["Positive " * 10] * 8 if concurrent else ["Positive"] * 8))
    configure(Limits(batch_timeout_s=0.5))
    try:
        result = asyncio.run(batch.run_batch_to_end(
            engine, "choice", "Positive\nNegative", [f"p{i}" for i in range(8)]))
    finally:
        configure(Limits())
    totals = result.summarize()
    assert "one batch took longer than 0.5 s" in totals["note"]
    left = totals["prompts"] - totals["finished"] + totals["stopped"]
    assert left > 0 and totals["wall_s"] < 5
