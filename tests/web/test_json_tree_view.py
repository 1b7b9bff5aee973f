"""The JSON tab's live trees as the Run and Stop handlers send them (no browser)."""

import asyncio

import gradio as gr

from playground.run.result import RunResult
from playground.web.inflight import Flight
from playground.web.json_tree_view import Trees, after_stop

SKIP = gr.skip()


def test_trees_follow_the_flight_and_skip_what_did_not_change():
    flight = Flight()
    drawn = Trees(flight, ["constrained box", "free box"])

    def trees():
        return asyncio.run(drawn())

    assert trees() == ("", "")  # before the model: both cleared
    flight.results[:] = [RunResult(text='{"a": "x'), RunResult(text="Sure")]
    first = trees()
    assert "still viable" in first[0] and "left JSON at character 0" in first[1]
    assert trees() == (SKIP, SKIP)
    flight.results[0] = RunResult(text='{"a": "xy')
    assert trees()[1] == SKIP
    flight.results[0] = RunResult(text='{"a": "' + "x" * 10_000)  # drawn in a thread
    assert "x" * 100 in trees()[0]


def test_other_tabs_get_no_trees():
    assert asyncio.run(Trees(Flight(), [])()) == ()
    assert after_stop(Flight(), [], (SKIP,) * 6) == ()


def test_a_stop_redraws_the_trees_only_when_it_stopped_something():
    flight = Flight()
    flight.results[:] = [RunResult(text='{"a": 1', verdict="stopped"), RunResult()]
    assert after_stop(flight, ["c", "f"], (SKIP,) * 6) == (SKIP, SKIP)
    constrained, free = after_stop(flight, ["c", "f"], ("Stopped by user.",) + (SKIP,) * 5)
    assert "stopped by user" in constrained and "still viable" not in constrained
    assert free == ""
