"""The inspector's "compare backends" (request option compare_backends): the constrained
run's tokens replayed through xgrammar and llguidance, through the service and the page.

The fake engine's token ids are the output's bytes, so the byte vocabulary replays them;
the real model's case is in test_compare_backends_on_the_cpu_model. The known differences
are the conformance table's (tests/doctor/test_mask_diff.py says which).
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from playground.core.constraints import from_text
from playground.errors import InputError
from playground.run import inspection
from playground.run.result import RunResult
from playground.run.service import run_request
from playground.run.token_inspector import mask_diff_html

ENFORCED_BY_BOTH = json.dumps({"type": "object", "properties": {"a": {"type": "integer"}},
                               "required": ["a"], "additionalProperties": False})


def compared(engine, mode: str, constraint: str, out: str, options=None) -> dict:
    engine.enqueue(out, "free text")
    result = asyncio.run(run_request(engine, mode, constraint, "q?",
                                     {"compare_backends": True, **(options or {})}))
    return result["constrained"]


# (mode, constraint, output, steps expected to differ: none, or some)
CASES = [
    ("json", ENFORCED_BY_BOTH, '{"a":12}', False),
    ("choice", "yes\nno", "yes", False),
    ("regex", "[0-9]{2}", "42", False),
    ("grammar", 'start: "x" NUMBER\n%import common.NUMBER', "x12", False),
    # xgrammar ignores minLength without a type; llguidance enforces it
    ("json", '{"minLength": 3}', '"ab"', True),
    # a date's calendar: llguidance checks it, xgrammar only the shape
    ("json", '{"type": "string", "format": "date"}', '"2020-02-30"', True),
]


@pytest.mark.parametrize(("mode", "constraint", "out", "differs"), CASES)
def test_the_option_finds_a_difference_only_where_there_is_one(fake_engine, mode,
                                                              constraint, out, differs):
    side = compared(fake_engine, mode, constraint, out)
    found = side["mask_diff"]
    assert found["error"] is None and found["backends"] == ["xgrammar", "guidance"]
    assert bool(found["steps"]) is differs
    assert found["compare_s"] >= 0 and not found["out_of_time"]
    assert side["tokens"], "comparing turns the inspector on"
    if differs:  # the replay ends where one of them refused the output's token
        last = found["steps"][-1]
        assert False in last["accepted"].values()
        assert found["compared"] == last["step"] + 1
    else:
        assert found["compared"] == found["tokens"] == len(out) + 1  # the end token too


def test_only_when_asked(fake_engine):
    fake_engine.enqueue("yes", "no")
    plain = asyncio.run(run_request(fake_engine, "choice", "yes\nno", "q?", {"inspect": True}))
    assert plain["constrained"]["mask_diff"] is None
    fake_engine.enqueue("yes", "no")
    never = asyncio.run(run_request(fake_engine, "choice", "yes\nno", "q?"))
    assert "mask_diff" not in never["constrained"]


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_the_option_is_a_boolean(fake_engine, value):
    with pytest.raises(InputError, match="compare_backends"):
        asyncio.run(run_request(fake_engine, "choice", "yes\nno", "q?",
                                {"compare_backends": value}))


def test_an_engine_that_cannot_inspect_refuses_it(fake_engine, monkeypatch):
    monkeypatch.setattr(fake_engine, "inspects", False)
    with pytest.raises(InputError, match="compare_backends: the engine fake cannot inspect"):
        asyncio.run(run_request(fake_engine, "choice", "yes\nno", "q?",
                                {"compare_backends": True}))


def test_a_stopped_or_failed_run_is_not_compared(fake_engine):
    result = RunResult(finish_reason="stopped")
    result._token_ids = [1, 2]
    asyncio.run(inspection.compare_backends(fake_engine, from_text("choice", "a\nb"), result))
    assert result.mask_diff is None


def test_the_time_limit_keeps_the_steps_compared(fake_engine, monkeypatch):
    no_time = SimpleNamespace(active=lambda: SimpleNamespace(compile_timeout_s=0.0))
    monkeypatch.setattr(inspection, "limits", no_time)
    found = compared(fake_engine, "json", ENFORCED_BY_BOTH, '{"a":123456}')["mask_diff"]
    assert found["out_of_time"] and 0 < found["compared"] < found["tokens"]
    assert "the time limit ran out" in mask_diff_html({"mask_diff": found})


def test_the_page_draws_the_steps_and_escapes_them(fake_engine):
    found = compared(fake_engine, "json", '{"minLength": 3}', '"ab"')["mask_diff"]
    found["steps"][-1]["prefix"] = "<img src=x>"
    drawn = mask_diff_html({"mask_diff": found})
    assert "the masks differ at" in drawn and "guidance refuses this token" in drawn
    assert "<img" not in drawn and "&lt;img" in drawn
    agree = mask_diff_html({"mask_diff": compared(fake_engine, "choice", "yes\nno",
                                                  "yes")["mask_diff"]})
    assert "allowed the same tokens at all 4 steps" in agree
    assert mask_diff_html({"mask_diff": {"error": "guidance: <b>no</b>"}}).count("<b>") == 0
    assert mask_diff_html({}) == ""


@pytest.mark.slow
def test_compare_backends_on_the_cpu_model(embedded_engine):
    """SmolLM2's own tokens: none where both enforce the schema; the run's ids replayed."""
    result = asyncio.run(run_request(embedded_engine, "json", ENFORCED_BY_BOTH,
                                     "Give a JSON object with a small integer a.",
                                     {"compare_backends": True, "max_tokens": 24,
                                      "temperature": 0}))
    found = result["constrained"]["mask_diff"]
    assert found["error"] is None, found
    assert found["tokens"] == len(result["constrained"]["tokens"])
    if result["constrained"]["finish_reason"] == "stop":
        assert found["steps"] == [] and found["compared"] == found["tokens"]
