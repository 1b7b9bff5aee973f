"""The vLLM server engine against a small fake OpenAI-compatible server on loopback.

The fake speaks what `vllm serve` 0.26 speaks (SSE chunks, continuous usage, a final usage
chunk, `[DONE]`, errors as {"error": {...}}) and can be told to misbehave: fail with a
status, stall, end early, drop the connection. No GPU, no vllm.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from support import free_port

from playground.backends.vllm import openai_request
from playground.core.constraints import Choice, JsonSchema, LarkGrammar, Regex, from_text
from playground.core.limits import Limits
from playground.core.presets import load_presets
from playground.engines.base import SamplingSettings
from playground.engines.openai_engine import (
    OpenAIEngine,
    delta_text,
    error_message,
    read_event,
    root_url,
    server_timings,
)
from playground.engines.registry import create_engine, defaults
from playground.errors import EngineNotReady
from playground.run.service import run_request, stream_request

PRESETS = load_presets()
SQL = PRESETS["SQL SELECT"].constraint_text
# The stream limit is short but not tight: at 0.5 s a loaded 2-core machine let it run out
# before the fake server's drop was seen.
FAST = Limits(server_connect_timeout_s=2.0, server_stream_timeout_s=2.0, request_timeout_s=5.0)


# ---- the fake server -------------------------------------------------------------------

@dataclass
class Script:
    """What the fake answers next: deltas (each a string, possibly several "tokens" of
    one character class), or a failure."""

    deltas: list[str] = field(default_factory=lambda: ["{\"a\"", ": 1", "}"])
    tokens_per_delta: list[int] | None = None
    finish_reason: str = "stop"
    continuous_usage: bool = True
    token_ids: bool = False  # each delta's token ids (vLLM's return_token_ids)
    status: int = 200
    error: Any = None
    stall_s: float = 0.0  # before the first delta
    end_early: bool = False  # close cleanly without [DONE]
    drop: bool = False  # break the connection mid-stream
    error_event: str | None = None  # an {"error": ...} event mid-stream
    delay_s: float = 0.0  # between deltas
    metrics: dict[str, float] | None = None


class FakeServer:
    def __init__(self, models: tuple[str, ...] = ("fake-model",), dev_mode: bool = True) -> None:
        self.models = models
        self.dev_mode = dev_mode
        self.script = Script()
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.disconnected = threading.Event()
        self.in_flight = self.peak_in_flight = 0
        app = Starlette(routes=[
            Route("/v1/models", self.list_models),
            Route("/version", self.version),
            Route("/server_info", self.server_info),
            Route("/v1/chat/completions", self.complete, methods=["POST"]),
            Route("/v1/completions", self.complete, methods=["POST"]),
        ])
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical",
                                timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the fake server did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    async def list_models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "owned_by": "vllm", "max_model_len": 4096}
            for name in self.models]})

    async def version(self, request: Request) -> JSONResponse:
        return JSONResponse({"version": "0.26.0"})

    async def server_info(self, request: Request) -> JSONResponse:
        if not self.dev_mode:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return JSONResponse({"vllm_config": {"structured_outputs_config": {
            "backend": "xgrammar", "disable_any_whitespace": False}}})

    async def complete(self, request: Request) -> Any:
        body = await request.json()
        self.bodies.append(body)
        self.paths.append(request.url.path)
        self.headers.append(dict(request.headers))
        script = self.script
        if body.get("model") not in self.models:
            return JSONResponse({"error": {"message": f"The model `{body.get('model')}` does "
                                           "not exist.", "type": "NotFoundError", "code": 404}},
                                status_code=404)
        if script.status != 200:
            return JSONResponse({"error": script.error} if script.error is not None else
                                {"error": {"message": "boom", "type": "X", "code": 0}},
                                status_code=script.status)
        chat = request.url.path.endswith("chat/completions")
        return StreamingResponse(self.events(script, chat), media_type="text/event-stream")

    async def events(self, script: Script, chat: bool):
        def chunk(text: str | None, finish: str | None = None, usage: Any = None,
                  choices: bool = True, choice_extra: Any = None, **extra: Any) -> str:
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish, **(choice_extra or {})}
            if chat:
                choice["delta"] = {"content": text} if text is not None else {
                    "role": "assistant", "content": ""}
            else:
                choice["text"] = text or ""
            event: dict[str, Any] = {"id": "x", "model": "fake-model",
                                     "choices": [choice] if choices else []}
            if usage is not None:
                event["usage"] = usage
            event.update(extra)
            return f"data: {json.dumps(event)}\n\n"

        finished = False
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            tokens = 0
            usage = {"prompt_tokens": 7, "completion_tokens": 0, "total_tokens": 7}
            if chat:
                yield chunk(None, usage=usage if script.continuous_usage else None)
            await asyncio.sleep(script.stall_s)
            counts = script.tokens_per_delta or [1] * len(script.deltas)
            for index, (text, count) in enumerate(zip(script.deltas, counts, strict=True)):
                if script.drop and index == 1:
                    raise RuntimeError("the fake drops the connection")
                if script.error_event and index == 1:
                    yield f"data: {json.dumps({'error': {'message': script.error_event}})}\n\n"
                    break
                if script.end_early and index == 1:
                    return
                tokens += count
                usage = {"prompt_tokens": 7, "completion_tokens": tokens,
                         "total_tokens": 7 + tokens}
                last = index == len(script.deltas) - 1
                ids = {"token_ids": list(range(tokens - count, tokens))} if script.token_ids \
                    else {}
                yield chunk(text, script.finish_reason if last else None,
                            usage if script.continuous_usage else None, choice_extra=ids)
                await asyncio.sleep(script.delay_s)
            extra = {"metrics": script.metrics} if script.metrics else {}
            yield chunk(None, usage=usage, choices=False, **extra)
            yield "data: [DONE]\n\n"
            finished = True
        finally:  # cancelled, or closed because the client went away
            self.in_flight -= 1
            if not finished and not (script.drop or script.end_early or script.error_event):
                self.disconnected.set()


@pytest.fixture
def server():
    fake = FakeServer()
    url = fake.start()
    fake.url = url
    yield fake
    fake.stop()


@pytest.fixture
def engine(server):
    engine = OpenAIEngine(server.url, limits=FAST)
    engine.load()
    yield engine
    engine.shutdown()


def run(coroutine):
    return asyncio.run(coroutine)


async def collect(engine, prompt="Hi", constraint=None, settings=None):
    return [chunk async for chunk in engine.stream(prompt, constraint,
                                                    settings or SamplingSettings())]


# ---- the pure adapter ------------------------------------------------------------------

CHAT = SamplingSettings(max_tokens=9, temperature=0.5, top_p=0.9, seed=3, stop=["\n"],
                        system_prompt="Be brief.")


@pytest.mark.parametrize(
    ("constraint", "backend", "expected"),
    [
        (None, "auto", {}),
        (Choice(("yes", "no")), "auto", {"structured_outputs": {"choice": ["yes", "no"]}}),
        # llguidance reads \d as Unicode: it gets the validator's ASCII class.
        (Regex(r"\d+"), "guidance", {"structured_outputs": {"regex": "[0-9]+"}}),
        (JsonSchema({"type": "object"}), "auto",
         {"response_format": {"type": "json_schema", "json_schema": {
             "name": "playground", "schema": {"type": "object"}}}}),
        (LarkGrammar('?start: a\n?a: "x"'), "guidance",
         {"structured_outputs": {"grammar": 'start: a\na: "x"'}}),
    ],
)
def test_openai_request_constraint_fields(constraint, backend, expected):
    path, body = openai_request("Hi", constraint, CHAT, "m", backend)
    constraint_keys = {"structured_outputs", "response_format"}
    assert path == "/v1/chat/completions"
    assert {k: v for k, v in body.items() if k in constraint_keys} == expected


@pytest.mark.parametrize("backend", ["auto", "xgrammar"])
def test_openai_request_sends_lark_as_ebnf_where_xgrammar_may_read_it(backend):
    _, body = openai_request("Hi", LarkGrammar(SQL), CHAT, "m", backend)
    grammar = body["structured_outputs"]["grammar"]
    assert "::=" in grammar and "?start" not in grammar


@pytest.mark.parametrize(
    ("settings", "path", "expected"),
    [
        (CHAT, "/v1/chat/completions", {
            "model": "m", "max_tokens": 9, "temperature": 0.5, "top_p": 0.9, "seed": 3,
            "stop": ["\n"], "include_stop_str_in_output": True, "return_token_ids": True,
            "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
            "messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Hi"}]}),
        (SamplingSettings(chat_template=False, seed=None), "/v1/completions", {
            "model": "m", "max_tokens": 128, "temperature": 0.0, "top_p": 1.0,
            "include_stop_str_in_output": True, "return_token_ids": True, "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
            "prompt": "Hi", "add_special_tokens": False}),
    ],
    ids=["chat", "raw-prompt"],
)
def test_openai_request_settings(settings, path, expected):
    assert openai_request("Hi", None, settings, "m") == (path, expected)


@pytest.mark.parametrize(
    ("url", "expected"),
    [("http://h:8000", "http://h:8000"), ("http://h:8000/", "http://h:8000"),
     ("https://h/v1/", "https://h"), (" http://h:1/v1", "http://h:1")],
)
def test_root_url(url, expected):
    assert root_url(url) == expected


def test_root_url_needs_a_scheme():
    with pytest.raises(ValueError, match="http://"):
        root_url("localhost:8000")


@pytest.mark.parametrize(
    ("choice", "text"),
    [({"delta": {"content": "ab"}}, "ab"), ({"delta": {"role": "assistant"}}, ""),
     ({"text": "x"}, "x"), ({"delta": {"content": None}}, ""), ({}, "")],
)
def test_delta_text(choice, text):
    assert delta_text(choice) == text


@pytest.mark.parametrize(
    ("body", "message"),
    [(b'{"error": {"message": "bad  regex", "type": "BadRequestError", "code": 400}}',
      "bad regex"),
     (b'{"object": "error", "message": "old shape"}', "old shape"),
     (b'{"error": "Unauthorized"}', "Unauthorized"),
     (b'{"detail": "Not Found"}', "Not Found"),
     (b"plain\ntext", "plain text"),
     (b"", "(no message)")],
)
def test_error_message(body, message):
    assert error_message(body) == message


@pytest.mark.parametrize(
    ("event", "tokens", "expected"),
    [
        ({"choices": [{"delta": {"content": "ab"}}], "usage": {"completion_tokens": 5}}, 2,
         ("ab", [], 5, None)),
        ({"choices": [{"delta": {"content": "ab"}, "token_ids": [7, 8, 9]}]}, 2,
         ("ab", [7, 8, 9], 5, None)),
        ({"choices": [{"delta": {}, "token_ids": [7]}]}, 2, ("", [7], 3, None)),
        ({"choices": [{"text": "x", "finish_reason": "length"}]}, 2, ("x", [], 3, "length")),
        ({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}, 4,
         ("", [], 4, None)),
        ({"choices": [{"delta": {"role": "assistant", "content": ""}}]}, 0, ("", [], 0, None)),
    ],
    ids=["usage", "token-ids", "ids-without-text", "no-count", "final-usage", "role-only"],
)
def test_read_event(event, tokens, expected):
    read = read_event(event, tokens)
    assert (read.text, read.token_ids, read.tokens, read.finish) == expected


def test_server_timings_rename_vllms_per_request_metrics():
    assert server_timings({"time_to_first_token_ms": 20, "generation_time_ms": 500.0,
                           "queue_time_ms": 1, "mean_itl_ms": 4}) == {
        "vllm_ttft_s": 0.02, "vllm_decode_s": 0.5, "vllm_queue_s": 0.001}
    assert server_timings(None) == {}


# ---- flags -----------------------------------------------------------------------------

def test_engine_flags_make_an_openai_engine(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_API_KEY", "from-env")
    engine = create_engine(defaults(["--engine", "openai", "--base-url", "http://h:1/v1",
                                     "--server-stream-timeout-s", "7"]))
    assert isinstance(engine, OpenAIEngine)
    assert (engine.base_url, engine.requested_model, engine.api_key) == ("http://h:1", None,
                                                                         "from-env")
    assert engine.limits.server_stream_timeout_s == 7 and engine.backend == "auto"


def test_engine_openai_without_base_url_says_so():
    with pytest.raises(ValueError, match="needs --base-url"):
        create_engine(defaults(["--engine", "openai"]))


# ---- loading ---------------------------------------------------------------------------

def test_load_reads_model_version_and_backend(engine):
    assert engine.ready and engine.model == "fake-model"
    assert engine.info.name == "vLLM 0.26.0 server"
    assert engine.info.device == f"server {engine.base_url}"
    assert engine.info.options["structured_outputs_backend"] == "xgrammar (read from the server)"
    assert engine.backend == "xgrammar" and engine.info.options["max_model_len"] == 4096
    assert (engine.matcher_backend, engine.any_whitespace) == ("xgrammar", True)


def test_without_dev_mode_the_backend_comes_from_the_flag():
    fake = FakeServer(dev_mode=False)
    url = fake.start()
    try:
        engine = OpenAIEngine(url, backend="guidance", limits=FAST)
        engine.load()
        assert engine.backend == "guidance" and engine.matcher_backend == "guidance"
        assert engine.info.options["structured_outputs_backend"].startswith(
            "guidance (as --structured-outputs-backend says")
    finally:
        fake.stop()


def test_a_named_model_is_used_and_a_wrong_one_fails_the_load_clearly():
    fake = FakeServer(models=("a", "b"))
    url = fake.start()
    try:
        engine = OpenAIEngine(url, model="b", limits=FAST)
        engine.load()
        assert engine.model == "b"
        wrong = OpenAIEngine(url, model="c", limits=FAST)
        with pytest.raises(RuntimeError, match="serves no model 'c'; it serves: a, b"):
            wrong.load()
        assert "serves no model 'c'" in wrong.load_error
        with pytest.raises(EngineNotReady, match="serves no model 'c'"):
            run(wrong.wait_ready())
    finally:
        fake.stop()


def test_unreachable_server_fails_the_load_and_a_later_request_retries(monkeypatch, server):
    url = f"http://127.0.0.1:{free_port()}"
    engine = OpenAIEngine(url, limits=FAST)
    with pytest.raises(RuntimeError, match="cannot reach the vLLM server at .*is `vllm serve`"):
        engine.load()
    # The server comes up (here: the address changes to one that answers).
    engine.base_url = server.url
    monkeypatch.setattr("playground.engines.openai_engine.RETRY_LOAD_S", 0.0)
    chunks = run(collect(engine))
    assert engine.ready and chunks[-1].error is None


def test_api_key_is_sent(server):
    engine = OpenAIEngine(server.url, api_key="secret", limits=FAST)
    engine.load()
    run(collect(engine))
    assert server.headers[-1]["authorization"] == "Bearer secret"


# ---- streaming -------------------------------------------------------------------------

def test_deltas_stream_with_exact_token_counts_and_usage(engine, server):
    server.script = Script(deltas=["{\"a\"", ": 1", "}"], tokens_per_delta=[3, 2, 1],
                           metrics={"time_to_first_token_ms": 12.0})
    chunks = run(collect(engine, constraint=JsonSchema({"type": "object"})))
    assert [(c.text, c.output_tokens) for c in chunks[:-1]] == [
        ("{\"a\"", 3), (": 1", 5), ("}", 6)]
    final = chunks[-1]
    assert final.done and final.finish_reason == "stop" and final.error is None
    assert (final.output_tokens, final.prompt_tokens) == (6, 7)
    assert final.engine_timings == {"vllm_ttft_s": 0.012}
    assert server.bodies[-1]["response_format"]["type"] == "json_schema"


def test_token_ids_count_the_tokens_and_reach_the_chunks(engine, server):
    server.script = Script(deltas=["ab", "c"], tokens_per_delta=[2, 1], token_ids=True,
                           continuous_usage=False)
    chunks = run(collect(engine))
    assert [(c.token_ids, c.output_tokens) for c in chunks[:-1]] == [([0, 1], 2), ([2], 3)]
    assert chunks[-1].output_tokens == 3


def test_without_continuous_usage_each_delta_counts_one_token(engine, server):
    server.script = Script(deltas=["a", "bc", "d"], continuous_usage=False)
    chunks = run(collect(engine))
    assert [c.output_tokens for c in chunks] == [1, 2, 3, 3]
    assert chunks[-1].prompt_tokens == 7  # from the final usage chunk


def test_chat_template_off_uses_completions(engine, server):
    server.script = Script(deltas=["x", "y"])
    chunks = run(collect(engine, settings=SamplingSettings(chat_template=False)))
    assert server.paths[-1] == "/v1/completions" and server.bodies[-1]["prompt"] == "Hi"
    assert "".join(c.text for c in chunks) == "xy"


def test_a_click_gets_verdicts_and_timings_through_the_service(engine, server):
    server.script = Script(deltas=["pos", "itive"], tokens_per_delta=[1, 1])
    result = run(run_request(engine, "choice", "positive\nnegative", "Review: great",
                             {"max_tokens": 8}))
    constrained = result["constrained"]
    assert constrained["verdict"] == "valid" and constrained["text"] == "positive"
    assert constrained["ttft_s"] > 0 and constrained["latency_s"] >= constrained["ttft_s"]
    assert result["engine"]["name"] == "vLLM 0.26.0 server"
    # Both runs go to the server together, in either order.
    constraints = sorted(str(body.get("structured_outputs")) for body in server.bodies)
    assert constraints == ["None", str({"choice": ["positive", "negative"]})]


def test_raw_request_counts_the_same_tokens(engine, server):
    server.script = Script(deltas=["a", "b"], tokens_per_delta=[2, 3])
    raw = run(engine.raw_request("Hi", Regex("[ab]+"), SamplingSettings()))
    assert raw["tokens"] == 5 and 0 < raw["ttft_s"] <= raw["latency_s"]


# ---- errors: each a clear message on the request, the engine keeps serving -------------

@pytest.mark.parametrize(
    ("script", "message", "panel"),
    [
        (Script(status=400, error={"message": "grammar backend outlines cannot do this",
                                   "type": "BadRequestError", "code": 400}),
         "HTTP 400: grammar backend outlines cannot do this", False),
        (Script(status=500, error={"message": "engine dead", "type": "X", "code": 500}),
         "HTTP 500: engine dead", True),
        (Script(status=401, error="Unauthorized"), "HTTP 401: Unauthorized (give the key", True),
        (Script(stall_s=4), "waiting for the vLLM server's next streamed chunk took longer "
                            "than 2 s (raise it with --server-stream-timeout-s)", True),
        (Script(end_early=True), "closed the stream before it finished", True),
        (Script(drop=True), "dropped the connection mid-stream", True),
        (Script(error_event="out of KV cache"), "mid-stream: out of KV cache", False),
    ],
    ids=["400", "500", "401", "stall", "ends-early", "drops", "error-event"],
)
def test_server_failures_end_the_request_with_a_clear_error(engine, server, script, message,
                                                            panel):
    server.script = script
    chunks = run(collect(engine))
    final = chunks[-1]
    assert final.done and final.finish_reason == "error"
    assert message in final.error and "Traceback" not in final.error
    assert (engine.last_error is not None) == panel
    # The next request works, and a success clears the panel's error.
    server.script = Script()
    assert run(collect(engine))[-1].error is None and engine.last_error is None


def test_the_verdict_of_a_failed_request_is_error_with_the_servers_message(engine, server):
    server.script = Script(status=400, error={"message": "bad regex", "type": "B", "code": 400})
    result = run(run_request(engine, "regex", "[0-9]+", "Hi"))
    assert result["constrained"]["verdict"] == "error"
    assert any("HTTP 400: bad regex" in e for e in result["constrained"]["errors"])


def test_a_model_gone_from_the_server_is_a_404_on_the_request(engine, server):
    engine.model = "gone"
    final = run(collect(engine))[-1]
    assert "HTTP 404: The model `gone` does not exist." in final.error


def test_a_server_going_away_after_load_is_a_clear_error(engine, server):
    engine.base_url = f"http://127.0.0.1:{free_port()}"
    engine._clients.clear()
    final = run(collect(engine))[-1]
    assert "cannot reach the vLLM server" in final.error
    assert "cannot reach" in engine.last_error


def test_a_trickling_stream_is_cut_at_the_request_timeout(server):
    engine = OpenAIEngine(server.url, limits=Limits(server_stream_timeout_s=2,
                                                    request_timeout_s=0.3))
    engine.load()
    server.script = Script(deltas=["a"] * 20, delay_s=0.05)
    final = run(collect(engine))[-1]
    assert "one request took longer than 0.3 s (raise it with --request-timeout-s)" in \
        final.error


def test_raw_request_raises_on_failure(engine, server):
    server.script = Script(status=500)
    with pytest.raises(RuntimeError, match="HTTP 500"):
        run(engine.raw_request("Hi", None, SamplingSettings()))


# ---- stop ------------------------------------------------------------------------------

def test_cancelling_a_run_closes_the_server_request(engine, server):
    server.script = Script(deltas=["a"] * 200, delay_s=0.05)

    async def start_then_stop():
        first = asyncio.Event()

        async def consume():
            async for _ in stream_request(engine, "regex", "a+", "Hi"):
                first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(start_then_stop())
    # The stream had 10 s left: only a closed connection ends it unfinished this soon.
    assert server.disconnected.wait(5), "the server never saw the request go"


def test_closing_the_stream_generator_closes_the_request(engine, server):
    server.script = Script(deltas=["a"] * 200, delay_s=0.05)

    async def first_then_close():
        stream = engine.stream("Hi", None, SamplingSettings())
        await anext(stream)
        await stream.aclose()

    run(first_then_close())
    assert server.disconnected.wait(5)


def test_sixteen_concurrent_sessions(engine, server):
    server.script = Script(deltas=["{\"a\"", ": 1", "}"], delay_s=0.2)

    async def sixteen():
        return await asyncio.gather(*(run_request(
            engine, "json", '{"type": "object"}', f"Prompt {i}") for i in range(16)))

    results = run(sixteen())
    assert all(r["constrained"]["verdict"] == "valid" for r in results)
    # Together, not one after another: the server had every request in flight at once.
    assert server.peak_in_flight == 32


def test_check_converts_like_the_request(engine):
    assert engine.check(from_text("grammar", SQL)) == []


def test_the_engine_panel_shows_server_version_backend_and_the_last_failure(engine, server):
    from playground.web.markdown_safe import plain
    from playground.web.status import engine_markdown, engine_status

    panel = engine_markdown(engine)
    assert plain("vLLM 0.26.0 server") in panel and plain(server.url) in panel
    assert plain("fake-model") in panel
    assert plain("xgrammar (read from the server)") in panel and "**State:** ready" in panel
    server.script = Script(status=500, error={"message": "engine dead", "type": "X",
                                              "code": 500})
    run(collect(engine))
    assert plain("but the last request failed: ") in engine_markdown(engine)
    assert "HTTP 500: engine dead" in engine_status(engine)["last_error"]


def test_the_engine_panel_says_why_the_server_could_not_be_used():
    from playground.web.markdown_safe import plain
    from playground.web.status import engine_markdown

    engine = OpenAIEngine(f"http://127.0.0.1:{free_port()}", limits=FAST)
    engine.start_background_load().join(10)
    assert plain("failed to load: ServerError: cannot reach the vLLM server") in \
        engine_markdown(engine)


def test_the_bench_protocol_runs_both_paths_against_the_server(engine, server):
    from playground.bench import engine_bench as bench

    server.script = Script(deltas=["{\"a\"", ": 1", "}"], tokens_per_delta=[2, 2, 1])

    async def measure():
        single = await bench.single_requests(engine, 1, lambda message: None)
        table = await bench.throughput_table(engine, [4], 1, 16, lambda message: None)
        return single, table

    single, table = run(measure())
    assert single["json"]["raw"]["output_tokens"] == 5
    assert single["json"]["playground"]["output_tokens"] == 5
    assert table["4"]["constrained_tokens_mean"] == 5 and table["4"]["throughput_ratio"] > 0
    # Half the requests went the raw way: the same body, the same endpoint.
    assert len({json.dumps(body, sort_keys=True) for body in server.bodies}) < len(server.bodies)


def test_the_suite_generates_through_a_server(server, tmp_path, capsys):
    """`suite --engine openai`: one request per schema to the server, judged as anywhere."""
    from playground import cli

    folder = tmp_path / "bench"
    folder.mkdir()
    for name, schema in (("a.json", {"type": "object", "required": ["a"]}),
                         ("b.json", {"type": "object", "required": ["b"]})):
        (folder / name).write_text(json.dumps({"schema": schema, "tests": []}))
    server.script = Script(deltas=['{"a"', ": 1", "}"])
    assert cli.main(["suite", str(folder), "--backend", "xgrammar", "--engine", "openai",
                     "--base-url", server.url, "--jobs", "1"]) == 0
    generation = json.loads(capsys.readouterr().out)["generation"]
    assert generation["verdicts"] == {"valid": 1, "invalid": 1}
    assert generation["engine"]["name"] == "vLLM 0.26.0 server"
    sent = sorted(body["response_format"]["json_schema"]["schema"]["required"][0]
                  for body in server.bodies)  # at once, in any order: a server batches
    assert sent == ["a", "b"]


def test_a_server_that_ignores_max_tokens_is_cut_off(server, engine):
    """Not read to the request's time limit: past max_tokens the stream is closed."""
    server.script = Script(deltas=["yes "] * 50, delay_s=0.01)
    chunks = run(collect(engine, settings=SamplingSettings(max_tokens=3)))
    final = chunks[-1]
    assert final.finish_reason == "error" and "for max_tokens 3" in final.error
    assert sum(1 for c in chunks if c.text) == 3


@pytest.mark.parametrize("count", [-5, True, "7", None])
def test_impossible_usage_counts_are_not_taken(count):
    event = {"choices": [{"index": 0, "delta": {"content": "a"}}],
             "usage": {"completion_tokens": count}}
    assert read_event(event, 2).tokens == 3  # a delta counts as one token
