"""The engine panel and /status: what the engine is, its health and how busy it is."""

from __future__ import annotations

import threading
from typing import Any

import gradio as gr

from playground.engines.base import Engine
from playground.run import watchdog
from playground.web.controls import ENGINE_QUEUE
from playground.web.markdown_safe import plain


def engine_status(engine: Engine, queue: dict[str, int] | None = None) -> dict[str, Any]:
    """`/status`: health is "loading", "ready", "load failed" or "failed" (died; the
    engine is not restarted, `failure` says why)."""
    health = engine.health  # first: it notices a death that `ready` must then reflect
    fraction, message = engine.progress
    return {"ready": engine.ready, "health": health, "failure": engine.failure,
            "error": engine.load_error, "progress": fraction,
            "message": message, "engine": engine.info.as_dict(),
            "last_error": engine.last_error, "warning": engine.warning, "queue": queue,
            "event_loop": stalls.as_dict() if (stalls := watchdog.seen()) else None}

def engine_markdown(engine: Engine, queue: dict[str, int] | None = None) -> str:
    info = engine.info
    fraction, message = engine.progress
    state = ("ready" if engine.ready else f"failed to load: {engine.load_error}"
             if engine.load_error else f"loading {fraction:.0%}: {message}")
    if engine.health == "failed":
        state = engine.dead_message()
    elif queue and queue["waiting"]:
        state += f", busy: {queue['running']} running, {queue['waiting']} waiting"
    if engine.ready and engine.last_error:
        state += f", but the last request failed: {engine.last_error}"
    if engine.warning:
        state += f". Warning: {engine.warning}"
    options = ", ".join(f"{k}={v}" for k, v in info.options.items()) or "defaults"
    # A server names its own models and writes its own errors: all shown as typed.
    return (f"**Engine:** {plain(info.name)} · **Model:** {plain(info.model)} · "
            f"**Device:** {plain(info.device)} · **State:** {plain(state)}  \n"
            f"<small>Options: {plain(options)}</small>")

def engine_concurrency(engine: Engine) -> int:
    """Default number of model events at once: as many clicks as the CPU model's batch
    holds (two sequences each; more would wait inside the engine, where the page shows no
    place in the queue), one where it runs one sequence at a time, many for vLLM."""
    if not engine.concurrent:
        return 1
    batch = getattr(engine, "max_batch", None)  # the CPU engine's --cpu-batch
    return max(1, batch // 2) if batch else 64

def follow_engine_concurrency(demo: gr.Blocks, engine: Engine) -> threading.Thread:
    """Once the model has loaded, hold the model's queue group to what it runs at once.
    The page is built before the model loads, when a CPU model of another architecture
    than Llama cannot yet be told from one that batches: it steps one sequence at a time,
    so a second click would wait inside the engine with no place in the queue shown."""
    def follow() -> None:
        engine.wait_loaded()
        if not engine.ready:
            return
        limit = engine_concurrency(engine)
        for fn in demo.fns.values():  # Gradio takes a lower limit from the next request
            if fn.concurrency_id == ENGINE_QUEUE and isinstance(fn.concurrency_limit, int):
                fn.concurrency_limit = min(fn.concurrency_limit, limit)
        group = _engine_group(demo)
        if group is not None and group.concurrency_limit is not None:
            group.concurrency_limit = min(group.concurrency_limit, limit)

    thread = threading.Thread(target=follow, name="queue-follows-engine", daemon=True)
    thread.start()
    return thread


def _engine_group(demo: gr.Blocks) -> Any:
    """Gradio's queue of the model's events (None before its first request)."""
    return getattr(getattr(demo, "_queue", None), "event_queue_per_concurrency_id",
                   {}).get(ENGINE_QUEUE)


def queue_load(demo: gr.Blocks) -> dict[str, int] | None:
    """Running and waiting model events, from Gradio's queue (None where it has none)."""
    group = _engine_group(demo)
    if group is None:
        return None
    return {"running": group.current_concurrency, "waiting": len(group.queue)}
