"""Serving a shared demo: one queue for the model with a place for each waiting user, Stop
and closed clients that free the engine at once, status that always answers, a login,
and logs (real failures with their traceback, input errors as one line)."""

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from support import free_port

from playground.core import limits
from playground.engines.fake import FakeEngine
from playground.web import app
from playground.web.batch_tab import batch_click, batch_stop_click
from playground.web.inflight import Flight
from playground.web.page import run_click, stop_click

LONG = " ".join(f"w{i}" for i in range(400))
CONTROLS = (500, 0.0, 1.0, 0, "", True, "")  # max tokens, temperature, ... (as the page sends)


# ---- access --------------------------------------------------------------------------


@pytest.mark.parametrize("host, flag, env, auth, warned", [
    ("127.0.0.1", None, None, None, False),
    ("localhost", None, None, None, False),
    ("::1", None, None, None, False),
    ("0.0.0.0", None, None, None, True),
    ("192.168.1.5", None, None, None, True),
    ("0.0.0.0", "ann:secret", None, ("ann", "secret"), False),
    ("0.0.0.0", None, "bob:pw:with:colons", ("bob", "pw:with:colons"), False),
    ("0.0.0.0", "ann:secret", "bob:other", ("ann", "secret"), False),  # the flag wins
])
def test_auth_and_the_warning_for_an_open_address(host, flag, env, auth, warned, monkeypatch,
                                                  caplog):
    if env:
        monkeypatch.setenv(limits.AUTH_ENV, env)
    else:
        monkeypatch.delenv(limits.AUTH_ENV, raising=False)
    logging.getLogger("playground").addHandler(caplog.handler)
    try:
        options = app.launch_options(SimpleNamespace(host=host, port=7860, auth=flag))
    finally:
        logging.getLogger("playground").removeHandler(caplog.handler)
    assert options["auth"] == auth
    assert options["max_file_size"] >= limits.active().max_batch_file_bytes
    assert ("WITHOUT A LOGIN" in caplog.text) is warned


@pytest.mark.parametrize("value", ["nocolon", ":pw", "user:", ":"])
def test_a_bad_auth_value_is_refused_in_one_line(value, capsys):
    from playground.cli import main

    assert main(["serve", "--engine", "cpu", "--auth", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --auth") and "Traceback" not in err


# ---- Stop, as the page's handlers do it ------------------------------------------------


def test_stop_shows_the_partial_output_labelled():
    engine = FakeEngine(delay_s=0.02, concurrent=False)
    engine.load()
    engine.enqueue(LONG, LONG)
    flight = Flight()
    outputs: list[tuple] = []

    async def scenario() -> tuple:
        async def consume() -> None:
            async for update in run_click(engine, "regex", "w.*", "p", *CONTROLS, flight=flight):
                outputs.append(update)

        task = asyncio.create_task(consume())
        while not (flight.results and flight.results[0].output_tokens >= 5):
            await asyncio.sleep(0.01)
        stop = asyncio.create_task(stop_click(flight))  # the page sends both at once
        task.cancel()
        return await stop

    check, *panels = asyncio.run(scenario())
    assert "Stopped" in check
    texts = [p for p in panels if isinstance(p, str) and p.startswith("w0 w1 w2")]
    assert texts and len(texts[0]) < len(LONG)
    badges = [p for p in panels if isinstance(p, str) and "badge stopped" in p]
    assert len(badges) == 2 and all(">stopped by user<" in badge for badge in badges)
    assert "partial" in badges[0] and "stopped by user before any output" in badges[1]
    assert engine.active == 0


def test_stop_after_a_finished_run_changes_nothing():
    engine = FakeEngine()
    engine.load()
    engine.enqueue("a", "b")
    flight = Flight()

    async def scenario() -> tuple:
        async for _ in run_click(engine, "regex", ".*", "p", *CONTROLS, flight=flight):
            pass
        return await stop_click(flight)

    assert all(type(value).__name__ == "skip" or value == {"__type__": "update"}
               or not isinstance(value, str) for value in asyncio.run(scenario()))


def test_a_stopped_batch_shows_its_totals():
    engine = FakeEngine(delay_s=0.02, concurrent=False)
    engine.load()
    engine.enqueue("a b", LONG, LONG)
    flight = Flight()

    async def scenario() -> tuple:
        async def consume() -> None:
            async for _ in batch_click(engine, "regex", ".*", "p1\np2\np3", None, *CONTROLS,
                                       flight=flight):
                pass

        task = asyncio.create_task(consume())
        while not (flight.batch and flight.batch.results[1] is not None
                   and flight.batch.results[1].output_tokens >= 3):
            await asyncio.sleep(0.01)
        stop = asyncio.create_task(batch_stop_click(flight))
        task.cancel()
        return await stop

    status, table, totals, files = asyncio.run(scenario())
    assert status.startswith("Stopped by user: 1 of 3 prompts finished")
    assert "1 valid" in totals and "1 stopped by user" in totals and "1 not run" in totals
    assert [row[3] for row in table] == ["valid", "stopped", None]
    assert len(files) == 2


# ---- the app, in this process, on a slow fake engine -------------------------------------


@pytest.fixture(scope="module")
def served():
    from gradio_client import Client

    from playground.core.presets import load_presets
    from playground.web.page import CSS, build_ui

    engine = FakeEngine(delay_s=0.02, concurrent=False)
    engine.load()
    demo = build_ui(engine, load_presets())  # the CPU engine's limit: one at a time
    demo.queue(default_concurrency_limit=None, max_size=3)
    port = free_port()
    demo.launch(server_port=port, prevent_thread_lock=True, css=CSS, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    yield engine, url, Client(url, verbose=False)
    demo.close()


def wait_for(condition, timeout: float = 10.0) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.01)
    return time.monotonic() - start


def test_users_past_capacity_wait_with_their_place_and_status_still_answers(served):
    engine, _, client = served
    engine.queue.clear()
    engine.enqueue(*[LONG] * 4)
    before = len(engine.requests)
    first = client.submit("regex", "w.*", "p", {"max_tokens": 500}, api_name="/generate")
    wait_for(lambda: engine.active == 1)
    second = client.submit("regex", "w.*", "p", {"max_tokens": 500}, api_name="/generate")
    wait_for(lambda: second.status().code.name == "IN_QUEUE")
    assert second.status().rank == 0  # nobody ahead of it but the running one
    start = time.monotonic()
    status = client.predict(api_name="/status")
    assert time.monotonic() - start < 2.0
    assert status["health"] == "ready"
    assert status["queue"] == {"running": 1, "waiting": 1}
    first.cancel()  # the second starts once the first has left the engine
    started_in = wait_for(lambda: len(engine.requests) == before + 2, timeout=2.0)
    assert started_in < 1.0 and engine.active == 1
    wait_for(lambda: second.status().code.name in {"PROCESSING", "ITERATING"}, timeout=2.0)
    second.cancel()
    wait_for(lambda: engine.active == 0, timeout=2.0)


def test_a_full_queue_refuses_with_a_message(served):
    engine, _, client = served
    engine.queue.clear()
    engine.enqueue(*[LONG] * 12)
    jobs = []
    for _ in range(5):  # one runs, three wait (max_size=3), one is refused
        jobs.append(client.submit("regex", "w.*", "p", {"max_tokens": 500},
                                  api_name="/generate"))
        # Each join is checked (Gradio's validator) before it counts against the queue's
        # size: joins within the same milliseconds would each find room.
        time.sleep(0.3)
    try:
        wait_for(lambda: any(job.done() for job in jobs), timeout=30.0)
        refused = [job for job in jobs if job.done()]
        assert len(refused) == 1
        with pytest.raises(Exception, match="Queue is full"):
            refused[0].result()
        def ranks() -> list:
            return sorted(job.status().rank for job in jobs
                          if job.status().code.name == "IN_QUEUE")

        wait_for(lambda: ranks() == [0, 1, 2])  # each waiting user sees how many are ahead
    finally:
        for job in jobs:
            job.cancel()
        wait_for(lambda: engine.active == 0, timeout=5.0)


def test_a_client_that_goes_away_frees_the_engine(served):
    engine, url, _ = served
    engine.queue.clear()
    engine.enqueue(LONG, LONG)
    child = subprocess.Popen([sys.executable, "-c", (
        "from gradio_client import Client\n"
        f"Client({url!r}, verbose=False).predict('regex', 'w.*', 'p', {{'max_tokens': 500}},"
        " api_name='/generate')")])
    try:
        wait_for(lambda: engine.active == 1, timeout=30.0)
        time.sleep(0.2)
        os.kill(child.pid, signal.SIGKILL)
        freed_in = wait_for(lambda: engine.active == 0, timeout=5.0)
    finally:
        child.kill()
        child.wait()
    assert freed_in < 2.0  # the next partial result (every 0.5 s) finds the client gone


def test_an_input_error_is_one_line_without_a_traceback(served, capfd):
    _, _, client = served
    with pytest.raises(Exception, match="unterminated subpattern"):
        client.predict("regex", "a(", "p", {}, api_name="/generate")
    assert "Traceback" not in capfd.readouterr().err


def test_a_login_is_asked_for_when_given():
    from gradio_client import Client

    from playground.web.page import build_ui

    engine = FakeEngine()
    engine.load()
    engine.enqueue("yes")
    demo = build_ui(engine, {})
    demo.queue()
    port = free_port()
    demo.launch(server_port=port, prevent_thread_lock=True, quiet=True, auth=("ann", "secret"))
    try:
        url = f"http://127.0.0.1:{port}/"
        with pytest.raises(Exception, match="(?i)login|auth|401|403|credentials"):
            Client(url, verbose=False).predict(api_name="/status")
        status = Client(url, auth=("ann", "secret"), verbose=False).predict(api_name="/status")
        assert status["ready"]
    finally:
        demo.close()


# ---- logs ----------------------------------------------------------------------------


def test_logs_failures_with_traceback_input_errors_in_one_line_prompts_hidden(caplog):
    from playground import log as logs
    from playground.engines.base import Chunk

    class Broken(FakeEngine):
        async def stream(self, prompt, constraint, settings, **kwargs):
            raise KeyError("boom")
            yield Chunk()

    logger = logging.getLogger("playground")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="playground")
    try:
        engine = Broken()
        engine.load()

        async def scenario() -> list:
            return [u async for u in run_click(engine, "regex", ".*", "secret prompt",
                                               *CONTROLS)]

        asyncio.run(scenario())
        asyncio.run(_collect(run_click(engine, "regex", "a(", "p", *CONTROLS)))
    finally:
        logger.removeHandler(caplog.handler)
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert failures and failures[0].exc_info and "KeyError" in caplog.text
    inputs = [r for r in caplog.records if r.getMessage().startswith("input error")]
    assert len(inputs) == 1 and inputs[0].exc_info is None
    assert "secret prompt" not in caplog.text and "<13 characters>" in caplog.text
    logs.configure("INFO", log_prompts=True)
    try:
        assert logs.prompt("secret prompt") == "'secret prompt'"
    finally:
        logs.configure("INFO", log_prompts=False)


async def _collect(updates) -> list:
    return [update async for update in updates]


def test_cli_stdout_carries_only_the_json(capfd):
    from playground.cli import main

    assert main(["check", "--mode", "regex", "--regex", "[0-9]+", "--output", "42"]) == 0
    out = capfd.readouterr().out
    import json

    assert json.loads(out)["verdict"] == "valid"


@pytest.mark.slow
def test_check_with_vllm_prints_only_json_on_stdout():
    import importlib.util
    import json

    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed")
    done = subprocess.run([sys.executable, "-m", "playground", "check", "--engine", "vllm",
                           "--mode", "regex", "--regex", "a+"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["vllm_accepts"] is True  # vLLM's INFO lines: stderr


def test_status_is_not_ready_once_a_death_is_noticed():
    """On the H100 /status said health "failed" and ready true in one answer: the death was
    noticed while the answer was being built, after `ready` had been read."""
    from playground.engines.fake import FakeEngine
    from playground.web.status import engine_status

    class DyingEngine(FakeEngine):
        def poll_health(self) -> None:
            self.mark_failed("the engine core process was killed by SIGKILL")

    engine = DyingEngine()
    engine.load()
    status = engine_status(engine)
    assert status["health"] == "failed" and status["ready"] is False
