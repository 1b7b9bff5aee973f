"""A vLLM server (`vllm serve`) over its OpenAI-compatible API: the way past one machine.

Tensor, pipeline and data parallelism, and several nodes, all live in the server; the
playground sends it one streamed HTTP request per run (`backends.vllm.openai_request`),
reads the deltas, and leaves timing and judging to `playground.run.service` as for every
engine. Every wait is bounded: connecting, each silence of the stream, the whole request.
Closing a stream (Stop, a cancelled task) closes its connection, and vLLM then aborts it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from playground.backends.vllm import openai_request, structured_outputs_kwargs
from playground.core.constraints import Constraint
from playground.core.limits import Limits
from playground.core.tools import CLOSE_TAG, TRIGGER
from playground.engines.base import Chunk, Engine, EngineInfo, Progress, SamplingSettings
from playground.errors import (
    ConstraintError,
    ServerError,
)

log = logging.getLogger(__name__)

API_KEY_ENV = "PLAYGROUND_API_KEY"
NAME = "vLLM server (OpenAI-compatible API)"
# Bounds on what a server may make this process hold: one SSE line, one error body.
MAX_LINE_BYTES = 1 << 20
MAX_ERROR_BYTES = 8192
# A failed load is retried by the next request, at most this often (the server may
# have been starting when the playground did).
RETRY_LOAD_S = 5.0


# Below the server's keep-alive timeout (vLLM's VLLM_HTTP_TIMEOUT_KEEP_ALIVE, 5 s).
KEEPALIVE_S = 2.0


def root_url(base_url: str) -> str:
    """`http://host:8000`, `.../` and `.../v1` all name the same server."""
    url = base_url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--base-url must start with http:// or https://, not {base_url!r}")
    return url.removesuffix("/v1")


def delta_text(choice: dict[str, Any]) -> str:
    """A choice's new text: `delta.content` from chat, `text` from completions."""
    delta = choice.get("delta")
    text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
    return text if isinstance(text, str) else ""


@dataclass
class Event:
    """What one streamed event adds: text, token ids (where the server sends them), the
    output tokens so far, and the finish reason once there is one."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    tokens: int = 0
    finish: str | None = None


def read_event(event: dict[str, Any], tokens: int, finish: str | None = None) -> Event:
    """One streamed event, after `tokens` output tokens.

    A delta may hold several tokens. Usage on every chunk (vLLM's continuous usage) and a
    delta's `token_ids` (vLLM's `return_token_ids`) count them exactly; from a server with
    neither, a delta counts as one token.
    """
    read = Event(finish=finish)
    has_ids = False
    for choice in event.get("choices") or []:  # n = 1: one choice
        if isinstance(choice, dict):
            read.text += delta_text(choice)
            read.finish = choice.get("finish_reason") or read.finish
            ids = choice.get("token_ids")
            if isinstance(ids, list):
                has_ids = True
                read.token_ids += [i for i in ids if isinstance(i, int)]
    usage = event.get("usage")
    counted = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if isinstance(counted, int) and not isinstance(counted, bool) and counted >= 0:
        read.tokens = max(tokens, counted)
    elif has_ids:
        read.tokens = tokens + len(read.token_ids)
    else:
        read.tokens = tokens + 1 if read.text else tokens
    return read


def server_timings(metrics: Any) -> dict[str, float]:
    """The server's own per-request timings (`vllm serve --enable-per-request-metrics`),
    under the names the in-process engine uses."""
    if not isinstance(metrics, dict):
        return {}
    names = {"time_to_first_token_ms": "vllm_ttft_s", "generation_time_ms": "vllm_decode_s",
             "queue_time_ms": "vllm_queue_s"}
    return {ours: metrics[theirs] / 1000 for theirs, ours in names.items()
            if isinstance(metrics.get(theirs), int | float)
            and math.isfinite(metrics[theirs])}  # JSON from a server may hold NaN


def error_message(body: bytes) -> str:
    """The server's own words from an error body (OpenAI's and vLLM's shapes), one line."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    message: Any = body.decode("utf-8", "replace")
    if isinstance(data, dict):
        error = data.get("error", data)
        message = error.get("message", error) if isinstance(error, dict) else error
        if not isinstance(message, str):
            message = data.get("message") or data.get("detail") or json.dumps(data)
    message = " ".join(str(message).split())
    return (message[:500] + " …") if len(message) > 500 else message or "(no message)"


class OpenAIEngine(Engine):
    concurrent = True  # the server batches

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None,
                 backend: str | None = None, disable_any_whitespace: bool = False,
                 limits: Limits | None = None) -> None:
        super().__init__()
        self.base_url = root_url(base_url)
        self.requested_model = model
        self.model = model or ""
        self.api_key = api_key or os.environ.get(API_KEY_ENV) or None
        # The server's backend decides how a Lark grammar is converted; until it is read
        # (or where it cannot be), the flag's value, else vLLM's own default.
        self.backend_flag = backend
        self.tag_ids: dict[str, int] = {}  # read from the server at connect (_tag_ids)
        self.backend = backend or "auto"
        # Whitespace in JSON is the server's setting (vLLM 0.26 reads no request's); the
        # flag says how the server runs where the server does not show it.
        self.disable_any_whitespace = disable_any_whitespace
        self._set_matcher(disable_any_whitespace)
        self.limits = limits or Limits()
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._clients = weakref.WeakKeyDictionary()
        self._reload_lock = threading.Lock()
        self._failed_at = 0.0
        self.info = EngineInfo(NAME, model or "(the server's first model)",
                               f"server {self.base_url}", {"base_url": self.base_url})

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> OpenAIEngine:
        if not getattr(args, "base_url", None):
            raise ValueError("--engine openai needs --base-url, the vLLM server's address "
                             "(e.g. http://127.0.0.1:8000)")
        return cls(args.base_url, model=args.model, api_key=args.api_key,
                   backend=args.structured_outputs_backend,
                   disable_any_whitespace=args.disable_any_whitespace,
                   limits=Limits.from_args(args))

    # ---- connection ------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _timeout(self) -> httpx.Timeout:
        connect = self.limits.server_connect_timeout_s
        return httpx.Timeout(connect=connect, read=self.limits.server_stream_timeout_s,
                             write=connect, pool=self.limits.request_timeout_s)

    def _client(self) -> httpx.AsyncClient:
        """One client per event loop: its pooled connections belong to the loop that made
        them (gradio runs one loop; tests and the bench may run several)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = httpx.AsyncClient(
                base_url=self.base_url, headers=self._headers(), timeout=self._timeout(),
                # The server batches: a pool smaller than the concurrency would queue
                # requests here instead of there.
                # An idle connection is dropped here before the server drops it (uvicorn,
                # vllm serve: 5 s, httpx's default too): reusing one the server was closing
                # failed 128 concurrent requests with ReadError on the H100.
                limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256,
                                    keepalive_expiry=KEEPALIVE_S))
            self._clients[loop] = client
        return client

    def _explain(self, exc: httpx.HTTPError) -> str:
        where = f"the vLLM server at {self.base_url}"
        if isinstance(exc, httpx.ConnectTimeout):
            return f"{where}: {self.limits.message('server_connect_timeout_s')}"
        if isinstance(exc, httpx.ConnectError):
            return (f"cannot reach {where} ({_reason(exc)}); is `vllm serve` running "
                    "there?")
        if isinstance(exc, httpx.ReadTimeout):
            return f"{where}: {self.limits.message('server_stream_timeout_s')}"
        if isinstance(exc, httpx.PoolTimeout):
            return f"{where}: {self.limits.message('request_timeout_s')} waiting for a connection"
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
            return f"{where} dropped the connection mid-stream ({_reason(exc)})"
        return f"{where}: {type(exc).__name__}: {_reason(exc)}"

    # ---- loading -----------------------------------------------------------------------

    def _load(self, progress: Progress) -> None:
        try:
            self._connect(progress)
        except Exception:
            self._failed_at = time.monotonic()
            raise
        # The grammar converter imports xgrammar (and torch): here, not on the first click.
        progress(0.8, "loading the grammar converter")
        import xgrammar  # noqa: F401  (the Lark conversion's library; it imports torch)

    def _connect(self, progress: Progress) -> None:
        progress(0.1, f"asking the vLLM server at {self.base_url} for its models")
        try:
            with httpx.Client(base_url=self.base_url, headers=self._headers(),
                              timeout=self._timeout()) as client:
                models = self._get(client, "/v1/models")
                cards = models.get("data") if isinstance(models, dict) else None
                cards = [m for m in cards if isinstance(m, dict)] if isinstance(cards, list) \
                    else []
                served = [m.get("id") for m in cards]
                if not served:
                    raise ServerError(f"{self.base_url} serves no model at /v1/models; is it "
                                       "an OpenAI-compatible server?")
                if self.requested_model and self.requested_model not in served:
                    raise ServerError(f"the server at {self.base_url} serves no model "
                                       f"{self.requested_model!r}; it serves: "
                                       f"{', '.join(map(str, served))}")
                self.model = self.requested_model or served[0]
                card = next(m for m in cards if m.get("id") == self.model)
                progress(0.5, "reading the server's version and structured-outputs backend")
                about = self._get(client, "/version", optional=True)
                version = about.get("version") if isinstance(about, dict) else None
                config = self._server_config(client)
                self.tag_ids = self._tag_ids(client)
        except httpx.HTTPError as exc:
            raise ServerError(self._explain(exc)) from None
        options: dict[str, Any] = {"base_url": self.base_url, "vllm_version": version}
        if card.get("max_model_len"):
            options["max_model_len"] = card["max_model_len"]
        read_backend = config.get("backend")
        if isinstance(read_backend, str):
            self.backend = read_backend
            options["structured_outputs_backend"] = f"{read_backend} (read from the server)"
            if self.backend_flag and self.backend_flag != read_backend:
                log.warning("--structured-outputs-backend %s ignored: the server runs %s",
                            self.backend_flag, read_backend)
        else:
            source = ("as --structured-outputs-backend says" if self.backend_flag
                      else "assumed: vLLM's default")
            options["structured_outputs_backend"] = (
                f"{self.backend} ({source}; the server shows its own only with "
                "VLLM_SERVER_DEV_MODE=1)")
        if self.tag_ids:
            options["tool_tag_ids"] = self.tag_ids
        restricted = config.get("disable_any_whitespace", self.disable_any_whitespace)
        if restricted:
            options["disable_any_whitespace"] = True
        self._set_matcher(bool(restricted))
        self.info = replace(self.info, name=f"vLLM {version} server" if version else NAME,
                            model=self.model, options=options)

    def _tag_ids(self, client: httpx.Client) -> dict[str, int]:
        """The Tool call tab's tags that are one token of the server's tokenizer (its
        /tokenize), which guidance needs as tokens (backends/guidance.tool_calls_lark)."""
        found = {}
        for tag in (TRIGGER, CLOSE_TAG):
            try:  # optional: a server without it (or answering oddly) keeps the tags text
                response = client.post("/tokenize", timeout=5, json={
                    "model": self.model, "prompt": tag, "add_special_tokens": False})
                answer = response.json() if response.status_code < 400 else None
            except (httpx.HTTPError, ValueError):
                answer = None
            tokens = answer.get("tokens") if isinstance(answer, dict) else None
            if isinstance(tokens, list) and len(tokens) == 1 and isinstance(tokens[0], int):
                found[tag] = tokens[0]
        return found

    def _set_matcher(self, disable_any_whitespace: bool) -> None:
        """The playground's own matcher judges cut outputs as the server's backend would."""
        self.matcher_backend = "guidance" if self.backend == "guidance" else "xgrammar"
        self.any_whitespace = not disable_any_whitespace

    def _get(self, client: httpx.Client, path: str, optional: bool = False) -> Any:
        response = client.get(path)
        if optional and response.status_code >= 400:
            return None
        if response.status_code >= 400:
            raise ServerError(f"the server at {self.base_url} answered GET {path} with HTTP "
                               f"{response.status_code}: {error_message(response.content)}")
        try:
            return response.json()
        except ValueError:
            if optional:
                return None
            raise ServerError(f"{self.base_url}{path} did not answer JSON; is it an "
                               "OpenAI-compatible server?") from None

    def _server_config(self, client: httpx.Client) -> dict[str, Any]:
        """The server's structured-outputs config: vLLM shows its config only in dev mode
        (/server_info, VLLM_SERVER_DEV_MODE=1); {} where it does not."""
        info = self._get(client, "/server_info?config_format=json", optional=True)
        config = info.get("vllm_config") if isinstance(info, dict) else None
        section = config.get("structured_outputs_config") if isinstance(config, dict) else None
        return section if isinstance(section, dict) else {}

    async def wait_ready(self) -> None:
        """As for every engine; but where loading failed, a request looks again, at most
        every few seconds (the server may have been starting, or restarted since)."""
        failed = self._ready.is_set() and self.load_error is not None
        if failed and time.monotonic() - self._failed_at > RETRY_LOAD_S:
            await asyncio.to_thread(self._reload)
        await super().wait_ready()

    def _reload(self) -> None:
        if not self._reload_lock.acquire(blocking=False):
            return  # another request is looking already
        try:
            self._load(self._report)
            self.load_error = None
            self._report(1.0, "ready")
        except Exception as exc:  # kept in load_error, shown in the panel and on the request
            self.load_error = f"{type(exc).__name__}: {exc}"
            self._report(1.0, f"failed: {self.load_error}")
        finally:
            self._reload_lock.release()

    # ---- requests ------------------------------------------------------------------------

    def check(self, constraint: Constraint) -> list[str]:
        """The same conversion the request will carry; the server validates the rest and
        its refusal (HTTP 400) comes back on the request in its own words."""
        try:
            structured_outputs_kwargs(constraint, self.backend, self.tag_ids)
        except ConstraintError:
            raise
        except Exception as exc:
            raise ConstraintError(f"{constraint.mode}: cannot convert it for vLLM: "
                                  f"{_reason(exc)}") from None
        return []

    def request(self, prompt: str, constraint: Constraint | None,
                settings: SamplingSettings) -> tuple[str, dict[str, Any]]:
        return openai_request(prompt, constraint, settings, self.model, self.backend,
                              self.tag_ids)

    async def events(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The JSON events of one streamed request, up to `[DONE]`; ServerError otherwise."""
        deadline = time.monotonic() + self.limits.request_timeout_s
        try:
            async with self._client().stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    raise ServerError(await self._http_error(response),
                                      health=response.status_code >= 500
                                      or response.status_code in (401, 403, 404))
                done = False
                async for data in _sse_data(response):
                    if time.monotonic() > deadline:
                        raise ServerError(f"the vLLM server at {self.base_url}: "
                                          f"{self.limits.message('request_timeout_s')}")
                    # Read on to the end of the body, so the connection can be reused.
                    done = done or data == "[DONE]"
                    if done:
                        continue
                    try:
                        event = json.loads(data)
                    except ValueError:
                        raise ServerError(f"the vLLM server at {self.base_url} sent a line "
                                          f"that is not JSON: {data[:80]!r}") from None
                    if isinstance(event, dict) and ("error" in event
                                                    or event.get("object") == "error"):
                        raise ServerError("the server failed the request mid-stream: "
                                          f"{error_message(data.encode())}", health=False)
                    if isinstance(event, dict):
                        yield event
                if done:
                    return
        except httpx.HTTPError as exc:
            raise ServerError(self._explain(exc)) from None
        raise ServerError(f"the vLLM server at {self.base_url} closed the stream before it "
                          "finished (no [DONE])")

    async def _http_error(self, response: httpx.Response) -> str:
        body = b""
        async for part in response.aiter_bytes():
            body += part
            if len(body) >= MAX_ERROR_BYTES:
                break
        status = response.status_code
        message = error_message(body[:MAX_ERROR_BYTES])
        hint = {401: " (give the key with --api-key or $" + API_KEY_ENV + ")",
                404: f" (model {self.model!r}, path {response.request.url.path})"}
        return f"the vLLM server answered HTTP {status}: {message}{hint.get(status, '')}"

    async def stream(self, prompt: str, constraint: Constraint | None,
                     settings: SamplingSettings) -> AsyncIterator[Chunk]:
        await self.wait_ready()
        tokens, finish, prompt_tokens = 0, None, None
        timings: dict[str, float] = {}
        try:
            # aclosing: a closed or cancelled run closes its connection now, not whenever
            # the garbage collector finalizes the generator.
            async with aclosing(self.events(*self.request(prompt, constraint, settings))) \
                    as events:
                async for event in events:
                    read = read_event(event, tokens, finish)
                    usage = event.get("usage")
                    counted = usage.get("prompt_tokens") if isinstance(usage, dict) else None
                    if isinstance(counted, int) and not isinstance(counted, bool) \
                            and counted >= 0:  # a count, not whatever a server sends
                        prompt_tokens = counted
                    timings = server_timings(event.get("metrics")) or timings
                    if read.tokens > settings.max_tokens:
                        # A server that ignores max_tokens would stream on to the request
                        # time limit; closing the stream cancels it there.
                        raise ServerError(
                            f"the server sent {read.tokens:,} tokens for max_tokens "
                            f"{settings.max_tokens:,}; stopped reading (is it a vLLM "
                            "server?)")
                    if read.text or read.tokens > tokens:
                        yield Chunk(text=read.text, output_tokens=read.tokens,
                                    token_ids=read.token_ids)
                    tokens, finish = read.tokens, read.finish
        except ServerError as exc:
            if exc.health:
                self.last_error = f"{time.strftime('%H:%M:%S')} {exc}"
            yield Chunk(done=True, output_tokens=tokens, finish_reason="error",
                        prompt_tokens=prompt_tokens, error=str(exc))
            return
        self.last_error = None
        error = ("the vLLM server failed this request (finish_reason 'error'); its log "
                 "says why") if finish == "error" else None
        yield Chunk(done=True, output_tokens=tokens, finish_reason=finish,
                    prompt_tokens=prompt_tokens, engine_timings=timings, error=error)

    async def raw_request(self, prompt: str, constraint: Constraint | None,
                          settings: SamplingSettings) -> dict[str, Any]:
        """The same HTTP request with nothing of the playground around it."""
        await self.wait_ready()
        start = time.perf_counter()
        tokens, ttft = 0, None
        async with aclosing(self.events(*self.request(prompt, constraint, settings))) as events:
            async for event in events:
                read = read_event(event, tokens)
                tokens = read.tokens
                if ttft is None and (read.text or tokens):
                    ttft = time.perf_counter() - start
        return {"tokens": tokens, "ttft_s": ttft, "latency_s": time.perf_counter() - start}

    def shutdown(self) -> None:
        """The server is not ours to stop; only this process's connections go."""
        clients, self._clients = list(self._clients.items()), weakref.WeakKeyDictionary()
        for loop, client in clients:
            if not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(client.aclose())


async def _sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The `data:` payloads of a server-sent event stream, each line bounded in size."""
    pending = b""
    async for part in response.aiter_bytes():
        pending += part
        *lines, pending = pending.split(b"\n")
        if len(pending) > MAX_LINE_BYTES:
            raise ServerError(f"the server sent a line over {MAX_LINE_BYTES} bytes")
        for line in lines:
            if line.startswith(b"data:"):
                yield line[5:].strip().decode("utf-8", "replace")
    if pending.startswith(b"data:"):
        yield pending[5:].strip().decode("utf-8", "replace")


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
