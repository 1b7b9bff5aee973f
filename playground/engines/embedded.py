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


class EmbeddedEngine(Engine):
    concurrent = False
    inspects = True  # records each step's distribution before the mask while decoding

    def __init__(self, dtype: str = "int8", threads: int | None = None,
                 disable_any_whitespace: bool = False, model: str | None = None) -> None:
        super().__init__()
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}")
        self.dtype = dtype
        self.threads = threads
        self.any_whitespace = not disable_any_whitespace
        self.model_spec = model or DEFAULT_CPU_MODEL
        self.info = EngineInfo("embedded (torch + xgrammar)", self.model_spec, "cpu",
                               {"dtype": dtype, "disable_any_whitespace": disable_any_whitespace})
        # Every torch call runs on this one thread: a second thread's OpenMP team competes
        # with the first one's spinning workers and halves the speed on a small machine
        # (measured on 2 cores: 32 tok/s on one thread, 16 when generation moved threads).
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cpu-model")
        self._closed = threading.Event()  # set by shutdown: a run in progress ends now
        self._reference: Any = None  # transformers' model, loaded by the first raw request

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
        # Prompt plus max tokens must fit (playground.run.inputs.check_context): SmolLM2's 8,192.
        config = getattr(loaded.model, "config", None)
        length = (config.get("max_position_embeddings") if isinstance(config, dict)
                  else getattr(config, "max_position_embeddings", None))
        self.context_length = int(length) if length else None
        progress(0.95, "warming up")
        self._generate_ids(self._encode("Hi", SamplingSettings()), None,
                           SamplingSettings(max_tokens=2), lambda ids: None, threading.Event())

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

    def _generate_ids(self, prompt_ids: list[int], compiled: Any, settings: SamplingSettings,
                      on_token, cancelled: threading.Event,
                      dists: list[TokenDist] | None = None) -> tuple[list[int], str]:
        """Greedy or sampled decoding with xgrammar's logits processor; (ids, reason).

        With `dists`, each step's distribution before the constraint's mask is added to it.
        """
        import xgrammar as xgr

        torch = self.torch
        processor = xgr.contrib.hf.LogitsProcessor(compiled) if compiled is not None else None
        generator = None
        if settings.seed is not None:
            generator = torch.Generator().manual_seed(settings.seed)
        ids = list(prompt_ids)
        out: list[int] = []
        text = ""
        with torch.inference_mode():
            logits, cache = self.model(torch.tensor([prompt_ids]))
            while not (cancelled.is_set() or self._closed.is_set()):
                if dists is not None:  # before the processor masks the logits in place
                    logprobs = torch.log_softmax(logits[0].float(), dim=-1)
                if processor is not None:
                    logits = processor(torch.tensor([ids]), logits)
                token = _pick(torch, logits[0], settings, generator)
                if dists is not None:
                    dists.append(_distribution(logprobs, token))
                ids.append(token)
                out.append(token)
                on_token(token)
                if token in self.stop_ids:
                    return out, "stop"
                if settings.stop:
                    before, text = len(text), self._decode(out)
                    # A new occurrence must end inside the text this token added.
                    if any(stop in text[max(0, before - len(stop) + 1):]
                           for stop in settings.stop):
                        return out, "stop"
                if len(out) >= settings.max_tokens:
                    return out, "length"
                logits, cache = self.model(torch.tensor([[token]]), cache)
        return out, "cancelled"

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

        def work() -> None:
            try:
                compiled, compile_s = (None, None)
                if constraint is not None:
                    compiled, compile_s = self.compile(constraint)
                prompt_ids = self._encode(prompt, settings)
                dists: list[TokenDist] | None = [] if inspect else None
                ids, reason = self._generate_ids(prompt_ids, compiled, settings, on_token,
                                                 cancelled, dists)
                final.append(Chunk(done=True, output_tokens=len(ids), finish_reason=reason,
                                   prompt_tokens=len(prompt_ids), compile_s=compile_s,
                                   distributions=dists))
            except Exception as exc:  # the user sees one line; the log has the traceback
                logging.getLogger(__name__).exception("generation failed")
                final.append(Chunk(done=True, finish_reason="error",
                                   error=f"{type(exc).__name__}: {exc}"))
            notify()

        worker = loop.run_in_executor(self.worker, work)
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
            cancelled.set()
            await worker

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def shutdown(self) -> None:
        # A stopping server must not wait for a run to reach its max tokens: the model's
        # thread holds the process's exit until it ends (SIGTERM with a 400-token run in
        # flight: 10 s).
        self._closed.set()
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


def _distribution(logprobs: Any, token: int, k: int = 5) -> TokenDist:
    """The top `k` of a step's log-probabilities, and the chosen token's value and rank."""
    values, order = logprobs.topk(k)
    chosen = logprobs[token]
    return TokenDist(list(zip(order.tolist(), values.tolist(), strict=True)), float(chosen),
                     int((logprobs > chosen).sum()) + 1)


def _pick(torch: Any, logits: Any, settings: SamplingSettings, generator: Any) -> int:
    """The next token: argmax at temperature 0, else nucleus (top-p) sampling."""
    if settings.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / settings.temperature, dim=-1)
    if settings.top_p < 1:
        probs = _nucleus(probs, settings.top_p)
    return int(torch.multinomial(probs, 1, generator=generator))


def _nucleus(probs: Any, top_p: float) -> Any:
    """`probs` with all but the smallest set of most probable tokens whose mass reaches
    `top_p` set to 0 (the most probable token always stays).

    Not transformers' TopPLogitsWarper: the same rule, but it sums in ascending order and
    breaks ties the other way, so a seed would no longer give the same output. On 1,200
    bf16-rounded random logits (bf16 logits tie often) its mask differed from this one
    691 times and the seeded draw 2 times; on 2,400 fp32 ones, 31 masks, no draw.
    """
    sorted_probs, order = probs.sort(descending=True)
    drop = sorted_probs.cumsum(-1) - sorted_probs >= top_p
    return probs.scatter(0, order[drop], 0.0)
