"""The CPU engine: any causal language model, constrained with xgrammar's logits processor.

`cpu_models.py` finds the model (`--cpu-model`: default SmolLM2-135M-Instruct) and makes
it ready: Llama-architecture models run in `llama.py`, others in transformers. This module
decodes token by token on one worker thread and streams the text.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import warnings
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from playground.core import limits
from playground.core.constraints import Constraint
from playground.engines.base import (
    Chunk,
    Engine,
    EngineInfo,
    Progress,
    SamplingSettings,
    TokenDist,
    encode_prompt,
)
from playground.engines.cpu_batch import BatchDecoder, Sequence
from playground.engines.cpu_models import (
    DEFAULT_CPU_MODEL,
    TransformersLM,
    checkpoint_folder,
    load,
    quiet_transformers,
)
from playground.errors import EngineDead, LimitError

DTYPES = ("int8", "bf16", "fp32")
# Grammar compilations, apart from the model's thread (two: one may run on past its limit).
_COMPILES = ThreadPoolExecutor(max_workers=2, thread_name_prefix="xgrammar-compile")


DEFAULT_MAX_BATCH = 4  # sequences per step: both sides of two clicks


class EmbeddedEngine(Engine):
    inspects = True  # records each step's distribution before the mask while decoding

    def __init__(self, dtype: str = "int8", threads: int | None = None,
                 disable_any_whitespace: bool = False, model: str | None = None,
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        super().__init__()
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.dtype = dtype
        self.max_batch = max_batch
        self.decoder: BatchDecoder | None = None
        self.threads = threads
        self.any_whitespace = not disable_any_whitespace
        self.model_spec = model or DEFAULT_CPU_MODEL
        self.info = EngineInfo("embedded (torch + xgrammar)", self.model_spec, "cpu",
                               {"dtype": dtype, "disable_any_whitespace": disable_any_whitespace,
                                "max_batch": max_batch})
        # Every torch call runs on this one thread: a second thread's OpenMP team competes
        # with the first one's spinning workers and halves the speed on a small machine
        # (measured on 2 cores: 32 tok/s on one thread, 16 when generation moved threads).
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cpu-model")
        self._closed = threading.Event()  # set by shutdown: a run in progress ends now
        # A burst's tokenization checks come from many threads at once; a fast tokenizer
        # used from two threads at once can fail with "Already borrowed".
        self._check_lock = threading.Lock()
        self._reference: Any = None  # transformers' model, loaded by the first raw request

    @property
    def concurrent(self) -> bool:  # type: ignore[override]
        """Both sides of a click, and other sessions, decode together: in one batch where
        the model steps several sequences at once (llama.py), else one after another."""
        return self.max_batch > 1 and (self.decoder is None or self.decoder.batched)

    # ---- loading ---------------------------------------------------------------------

    def _load(self, progress: Progress) -> None:
        self.worker.submit(self._load_on_worker, progress).result()

    def _load_on_worker(self, progress: Progress) -> None:
        progress(0.05, "importing torch and xgrammar")
        import torch
        import xgrammar as xgr

        if self.threads:
            torch.set_num_threads(self.threads)
        self.folder = checkpoint_folder(self.model_spec, progress)
        loaded = load(self.folder, self.dtype, lambda model: self.prepare(model, progress),
                      progress)
        self.info.options["runner"] = loaded.runner
        tokenizer = loaded.tokenizer
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.info.options["chat_template"] = self.has_chat_template
        self.stop_ids = {i for i in loaded.stop_ids if i is not None}
        progress(0.85, "building xgrammar's tokenizer info")
        tokenizer_info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=loaded.vocab_size, stop_token_ids=sorted(self.stop_ids))
        self.compiler = xgr.GrammarCompiler(
            tokenizer_info, cache_enabled=True,
            cache_limit_bytes=limits.active().compile_cache_bytes)
        self.model, self.tokenizer, self.torch = loaded.model, tokenizer, torch
        self.special_token_ids = frozenset(
            self.stop_ids | set(getattr(tokenizer, "all_special_ids", [])))
        # Prompt plus max tokens must fit (playground.run.inputs.check_context): SmolLM2's 8,192.
        config = getattr(loaded.model, "config", None)
        length = (config.get("max_position_embeddings") if isinstance(config, dict)
                  else getattr(config, "max_position_embeddings", None))
        self.context_length = int(length) if length else None
        self.decoder = BatchDecoder(loaded.model, torch, self.stop_ids, self._decode,
                                    self.worker, self.max_batch, self._closed)
        if not self.decoder.batched:
            self.info.options["max_batch"] = 1  # transformers' models step one at a time
        progress(0.95, "warming up")
        with torch.inference_mode():  # on this thread: the decoder's loop would wait for it
            logits, cache = loaded.model(torch.tensor([self._encode("Hi", SamplingSettings())]))
            self.decoder.forward_rows([int(logits[0].argmax())], [cache])

    def prepare(self, model: Any, progress: Progress = lambda fraction, message: None) -> Any:
        """The model in this engine's dtype (also used by the benchmark's raw path)."""
        import torch

        if self.dtype == "bf16":
            return model.to(torch.bfloat16)
        if self.dtype == "int8":
            progress(0.5, "quantizing Linear layers to int8")
            with warnings.catch_warnings():  # deprecated for torchao, still the fastest here
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.ao.quantization.quantize_dynamic(
                    model, {torch.nn.Linear}, dtype=torch.qint8)
        return model

    # ---- checking --------------------------------------------------------------------

    def check(self, constraint: Constraint) -> list[str]:
        from playground.backends.xgrammar import to_grammar

        to_grammar(constraint, self.any_whitespace)
        return []

    def compile(self, constraint: Constraint) -> tuple[Any, float]:
        from playground.backends.xgrammar import to_grammar

        start = time.perf_counter()
        grammar = to_grammar(constraint, self.any_whitespace)
        # xgrammar compiles without the GIL, in its own thread so it can be given up on past
        # the limit (a JSON schema with nested maxItems 500 took 5.8 s on 2 cores).
        future = _COMPILES.submit(self.compiler.compile_grammar, grammar)
        try:
            compiled = future.result(timeout=limits.active().compile_timeout_s)
        except concurrent.futures.TimeoutError:
            raise LimitError(limits.active().message("compile_timeout_s")) from None
        return compiled, time.perf_counter() - start

    # ---- generating ------------------------------------------------------------------

    def _encode(self, prompt: str, settings: SamplingSettings) -> list[int]:
        if settings.chat_template and not self.has_chat_template:
            # A base model (e.g. a GGUF without a template) reads the prompt as it is.
            settings = settings.model_copy(update={"chat_template": False})
        return encode_prompt(self.tokenizer, prompt, settings)

    # Long on purpose (~70 lines): the handoff between the decode thread and the event loop
    # (queue, cancellation, the final chunk) reads as one sequence; split, its order hides.
    async def stream(self, prompt: str, constraint: Constraint | None,
                     settings: SamplingSettings, inspect: bool = False
                     ) -> AsyncIterator[Chunk]:
        await self.wait_ready()
        if self._closed.is_set():  # one line for the user, not the executor's traceback
            raise EngineDead("the server is stopping")
        loop = asyncio.get_running_loop()
        # Tokens pile up here and the event loop is woken at most once per pile, so the
        # streaming side takes little of the GIL from the generating thread.
        pending: list[int] = []
        final: list[Chunk] = []
        wake = asyncio.Event()
        woken = threading.Event()
        cancelled = threading.Event()

        def notify() -> None:
            if not woken.is_set():
                woken.set()
                loop.call_soon_threadsafe(wake.set)

        def on_token(token: int) -> None:
            pending.append(token)
            notify()

        try:  # a refused or slow constraint ends the run as an engine error, in one line
            compiled, compile_s = (None, None)
            if constraint is not None:
                compiled, compile_s = await asyncio.to_thread(self.compile, constraint)
            prompt_ids = await asyncio.to_thread(self._encode, prompt, settings)
        except Exception as exc:
            yield Chunk(done=True, finish_reason="error", error=f"{type(exc).__name__}: {exc}")
            return
        dists: list[TokenDist] | None = [] if inspect else None

        def finished(future: concurrent.futures.Future) -> None:
            try:
                out, reason = future.result()
                final.append(Chunk(done=True, output_tokens=len(out), finish_reason=reason,
                                   prompt_tokens=len(prompt_ids), compile_s=compile_s,
                                   distributions=dists))
            except Exception as exc:  # the user sees one line; the log has the traceback
                logging.getLogger(__name__).error("generation failed: %s", exc)
                final.append(Chunk(done=True, finish_reason="error",
                                   error=f"{type(exc).__name__}: {exc}"))
            notify()

        assert self.decoder is not None  # loaded: wait_ready above
        done = self.decoder.submit(Sequence(prompt_ids, compiled, settings, on_token,
                                            cancelled, dists))
        done.add_done_callback(finished)
        ids: list[int] = []
        text = ""
        sent = 0  # ids already in a chunk
        try:
            while True:
                await wake.wait()
                wake.clear()
                woken.clear()
                count = len(pending)
                ids.extend(pending[:count])
                del pending[:count]
                if final and not pending:
                    last = final[0]
                    last.text = self._decode(ids)[len(text):]
                    last.token_ids = ids[sent:]
                    yield last
                    break
                # Decoding the whole output each time keeps multi-byte characters whole.
                now = self._decode(ids)
                if count and not now.endswith("\ufffd"):
                    yield Chunk(text=now[len(text):], output_tokens=len(ids),
                                token_ids=ids[sent:])
                    text, sent = now, len(ids)
                if final:
                    wake.set()
        finally:
            cancelled.set()  # it leaves the batch at the next step
            await asyncio.wrap_future(done)

    def text_token_ids(self, text: str) -> list[int] | None:
        with self._check_lock:
            return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def shutdown(self) -> None:
        # A stopping server must not wait for a run to reach its max tokens: the model's
        # thread holds the process's exit until it ends (SIGTERM with a 400-token run in
        # flight: 10 s).
        self._closed.set()
        if self.decoder is not None:
            self.decoder.close()
        self.worker.shutdown(wait=False, cancel_futures=True)

    # ---- the bench's baseline --------------------------------------------------------

    async def raw_request(self, prompt: str, constraint: Constraint | None,
                          settings: SamplingSettings) -> dict[str, Any]:
        """transformers' `generate` with xgrammar's logits processor, on the same worker."""
        await self.wait_ready()
        return await asyncio.get_running_loop().run_in_executor(
            self.worker, self._raw_generate, prompt, constraint, settings)

    def _raw_generate(self, prompt: str, constraint: Constraint | None,
                      settings: SamplingSettings) -> dict[str, Any]:
        from playground.engines.reference import generate

        if self._reference is None:
            self._reference = self._reference_model()
        start = time.perf_counter()
        compiled = self.compile(constraint)[0] if constraint is not None else None
        return generate(self._reference, self.tokenizer, self._encode(prompt, settings),
                        compiled, settings, start)

    def _reference_model(self) -> Any:
        """transformers' own model class on this engine's weights, in its dtype."""
        if isinstance(self.model, TransformersLM):
            return self.model.model
        import torch
        import transformers

        with quiet_transformers():
            model = transformers.AutoModelForCausalLM.from_pretrained(self.folder,
                                                                      dtype=torch.float32)
        return self.prepare(model.eval())
