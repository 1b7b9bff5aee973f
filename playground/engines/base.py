"""The small interface every engine implements, and the types they share.

An engine turns (prompt, constraint or None, settings) into a stream of `Chunk`s. It
does no wall-clock timing and no validation: `playground.run.service` does both, the same
way for every engine.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from playground.core.constraints import Constraint
from playground.core.settings import SamplingSettings, chat_messages
from playground.errors import EngineDead, EngineNotReady

Progress = Callable[[float, str], None]

# SamplingSettings is part of the interface (every engine receives it); it lives in core.
__all__ = ["Chunk", "Engine", "EngineInfo", "Progress", "SamplingSettings", "TokenDist",
           "encode_prompt"]


def encode_prompt(tokenizer: Any, prompt: str, settings: SamplingSettings) -> list[int]:
    """Prompt token ids, through the model's chat template unless the settings turn it off.

    Every engine and every raw path encodes with this, so both sides of a comparison see
    the same tokens. Special tokens come from the template alone (none added twice).
    """
    text = prompt
    if settings.chat_template:
        # Tools through the template's own `tools=` where it has a tools section (Qwen2.5),
        # else in the system prompt in the same Hermes style.
        native = bool(settings.tools) and "tools" in str(
            getattr(tokenizer, "chat_template", "") or "")
        extra = {"tools": settings.tools} if native else {}
        text = tokenizer.apply_chat_template(
            chat_messages(prompt, settings, tools_in_system=not native), tokenize=False,
            add_generation_prompt=True, **extra)
    return list(tokenizer.encode(text, add_special_tokens=False))


@dataclass(frozen=True)
class EngineInfo:
    name: str
    model: str
    device: str
    options: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "device": self.device,
                "options": self.options}


@dataclass
class Chunk:
    """New text from one request; the last chunk has `done` and the request's totals."""

    text: str = ""
    output_tokens: int = 0
    done: bool = False
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    compile_s: float | None = None
    error: str | None = None
    # Timings the engine measured itself (e.g. vLLM's own time to first token).
    engine_timings: dict[str, float] = field(default_factory=dict)
    # The ids of the tokens this chunk's text came from (the token inspector replays them).
    token_ids: list[int] = field(default_factory=list)
    # Final chunk, asked with stream(..., inspect=True) of an engine that records them while
    # decoding: each output token's unconstrained distribution.
    distributions: list[TokenDist] | None = None


@dataclass(frozen=True)
class TokenDist:
    """The model's own distribution at one output step, before any constraint masked it."""

    top: list[tuple[int, float]]  # the likeliest (token id, log-probability), best first
    logprob: float  # the chosen token's log-probability
    rank: int  # the chosen token's place among all tokens (1: the model's first choice)


class Engine(ABC):
    """Loaded once per process, in the background; runs wait until it is ready."""

    info: EngineInfo
    # Whether requests may run at the same time (vLLM batches them; the CPU model
    # runs one at a time, so concurrent runs would only slow each other down).
    concurrent: bool = True
    # Whose token matcher tells whether this engine's output is still on the way to a match
    # (playground.judging.matcher): the backend that constrained it, with its whitespace rule.
    matcher_backend: str = "xgrammar"
    any_whitespace: bool = True
    # The model's context in tokens (vLLM's max_model_len), which prompt plus max tokens
    # must fit; None where unknown. Set by `_load`.
    context_length: int | None = None
    # Whether the token inspector can have each step's unconstrained distribution: recorded
    # while decoding (stream(..., inspect=True) puts them on the final chunk), or else
    # recomputed after the run by `inspect_distributions`.
    inspects: bool = False

    def __init__(self) -> None:
        self._ready = threading.Event()
        self.load_error: str | None = None
        # Set when a loaded engine dies. It is not restarted: the app must be (say so).
        self.failure: str | None = None
        # Something the engine loaded but cannot be trusted with (shown in the panel).
        self.warning: str | None = None
        # The latest request failure that is the engine's own, not the request's (a
        # server unreachable or dropping streams), with its time; a success clears it.
        self.last_error: str | None = None
        self.progress: tuple[float, str] = (0.0, "not started")

    def _report(self, fraction: float, message: str) -> None:
        self.progress = (fraction, message)

    def load(self, progress: Progress | None = None) -> None:
        """Load the model; safe to call from a background thread."""

        def report(fraction: float, message: str) -> None:
            self._report(fraction, message)
            if progress:
                progress(fraction, message)

        try:
            self._load(report)
            report(1.0, "ready")
        except Exception as exc:  # the UI must keep serving and say why
            self.load_error = f"{type(exc).__name__}: {exc}"
            report(1.0, f"failed: {self.load_error}")
            raise
        finally:
            self._ready.set()

    def start_background_load(self) -> threading.Thread:
        def run() -> None:
            try:
                self.load()
            except Exception:  # kept in load_error, shown in the UI; the log has why
                logging.getLogger(__name__).exception("the engine failed to load")

        thread = threading.Thread(target=run, name="engine-load", daemon=True)
        thread.start()
        return thread

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self.load_error is None and self.failure is None

    @property
    def health(self) -> str:
        """"loading", "ready", "load failed" or "failed" (died after loading)."""
        self.poll_health()
        if self.failure:
            return "failed"
        if not self._ready.is_set():
            return "loading"
        return "load failed" if self.load_error else "ready"

    def poll_health(self) -> None:  # noqa: B027 (a hook: engines with a process check it)
        """Notice a death the engine has not reported yet, and `mark_failed` it."""

    def mark_failed(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
            logging.getLogger(__name__).error(
                "engine died: %s; it is not restarted, restart the app", reason)

    def dead_message(self) -> str:
        return f"engine died: {self.failure}; restart the app"

    # The tokenizer's special ids (end of sequence, ...): left out of an output's ids where
    # they are compared with the tokenizer's own encoding of its text (run.tokenization).
    special_token_ids: frozenset[int] = frozenset()

    def text_token_ids(self, text: str) -> list[int] | None:
        """The tokenizer's own ids for `text`, no special tokens added; None where this
        engine has no tokenizer of its own (a server)."""
        return None

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until loading has ended (loaded or failed); False if `timeout` ran out."""
        return self._ready.wait(timeout)

    async def wait_ready(self) -> None:
        while not self._ready.is_set():
            await asyncio.sleep(0.1)
        if self.load_error:
            raise EngineNotReady(f"the engine failed to load: {self.load_error}")
        self.poll_health()
        if self.failure:
            raise EngineDead(self.dead_message())

    @abstractmethod
    def _load(self, progress: Progress) -> None: ...

    @abstractmethod
    def stream(self, prompt: str, constraint: Constraint | None,
               settings: SamplingSettings) -> AsyncIterator[Chunk]:
        """Generate for one prompt, yielding text as it comes and a final `done` chunk.

        Engines that inspect take a keyword `inspect: bool = False` too (see `inspects`).
        """

    @abstractmethod
    async def raw_request(self, prompt: str, constraint: Constraint | None,
                          settings: SamplingSettings) -> dict[str, Any]:
        """The same work done by the underlying library alone, for the bench's baseline.

        Returns {"tokens", "ttft_s", "latency_s"}, timed inside (the raw path has no
        service around it), with the same prompt encoding, constraint and weights.
        """

    def shutdown(self) -> None:  # noqa: B027 (a hook: most engines hold nothing to give back)
        """Give back what the engine holds (processes, GPU memory); safe to call twice."""

    async def inspect_distributions(self, prompt: str, settings: SamplingSettings,
                                    output_ids: list[int]) -> list[TokenDist]:
        """Each output token's unconstrained distribution, recomputed after the run."""
        raise NotImplementedError(f"{self.info.name} cannot inspect tokens")

    def count_prompt_tokens(self, prompt: str, settings: SamplingSettings) -> int | None:
        """The tokens a prompt takes as the engine encodes it; None where it cannot tell."""
        tokenizer = getattr(self, "tokenizer", None)
        return None if tokenizer is None else len(encode_prompt(tokenizer, prompt, settings))

    def check(self, constraint: Constraint) -> list[str]:
        """Engine-specific problems with a constraint (compiled or converted); [] if none.

        Raise ConstraintError where the engine cannot use the constraint at all.
        """
        return []
