"""The engine panel's and /status's module (playground.web.status): the model's queue
group follows what the engine runs at once."""

from __future__ import annotations


def test_the_model_queue_follows_an_engine_that_turns_out_to_run_one_at_a_time():
    """The page is built before the model loads; a CPU model that then steps one sequence
    at a time (not a Llama) holds the model's queue group to one event."""
    from playground.core.presets import load_presets
    from playground.engines.fake import FakeEngine
    from playground.web.controls import ENGINE_QUEUE
    from playground.web.page import build_ui
    from playground.web.status import follow_engine_concurrency

    engine = FakeEngine()
    demo = build_ui(engine, load_presets())
    model_events = [fn for fn in demo.fns.values() if fn.concurrency_id == ENGINE_QUEUE]
    assert model_events and {fn.concurrency_limit for fn in model_events} == {64}
    follower = follow_engine_concurrency(demo, engine)
    engine.concurrent = False  # what loading found out
    engine.load()
    follower.join(timeout=10)
    assert {fn.concurrency_limit for fn in model_events} == {1}
