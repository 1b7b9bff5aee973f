"""vLLM 0.26 in-process (`AsyncLLM`): requests from every session are batched by vLLM.

The pure adapters from a constraint to vLLM's `StructuredOutputsParams` fields live in
`backends.vllm` (shared with the server engine, the doctor and copy as code).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from playground.backends.choice import BackendChoice, choose_backend, named_backend, pending
from playground.backends.guidance import special_tag_ids
from playground.backends.vllm import (
    sampling_kwargs,
    structured_outputs_kwargs,
    vllm_check,
)
from playground.core.constraints import Constraint
from playground.core.parent_death import end_with_parent
from playground.engines.base import (
    Chunk,
    Engine,
    EngineInfo,
    Progress,
    SamplingSettings,
    TokenDist,
    encode_prompt,
)
from playground.engines.batched_encode import BatchedEncoder
from playground.errors import EngineDead

log = logging.getLogger(__name__)


def own_tokenizer(model: str) -> Any | None:
    """A tokenizer of the playground's own for the model, apart from vLLM's; None where the
    model's folder or name has no tokenizer transformers can load.

    vLLM 0.26's tokenizer is a pool of copies: a call that finds every copy in use makes
    another with `copy.deepcopy`. Ours counted prompt tokens in threads with it, so vLLM's
    next use, on the event loop (`add_request` reads `eos_token_id`), found the pool empty
    and deep-copied the whole tokenizer there: a 2.0 s stall of every user in the
    64-session soak on the H100, and RSS +220 MB of copies. Read before vLLM starts: the
    backend is chosen from it (backends/choice.py).
    """
    import transformers

    try:
        return transformers.AutoTokenizer.from_pretrained(model)
    except Exception as exc:
        log.warning("using vLLM's tokenizer for prompts (transformers cannot load %s's: %s)",
                    model, exc)
        return None


class VllmEngine(Engine):
    concurrent = True
    inspects = True  # by one extra prefill after the run (`inspect_distributions`)

    def __init__(self, model: str, engine_options: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.engine_options = engine_options
        self.info = EngineInfo("vLLM (AsyncLLM, in-process)", model, "cuda",
                               {k: v for k, v in engine_options.items()
                                if k != "structured_outputs_config"}
                               | engine_options["structured_outputs_config"])
        self._ids = itertools.count()
        self.tag_ids: dict[str, int] = {}  # set once the tokenizer is loaded
        self._encode_lock = threading.Lock()
        self._text_ids = BatchedEncoder(self._encode_texts)  # the tokenization check's
        config = engine_options["structured_outputs_config"]
        self.any_whitespace = not config["disable_any_whitespace"]
        self.backend_named = config["backend"] is not None  # else chosen per model at load
        self._use_backend(named_backend(config["backend"], config["disable_any_whitespace"])
                          if self.backend_named else pending())

    def _use_backend(self, choice: BackendChoice) -> None:
        config = self.engine_options["structured_outputs_config"]
        for options in (config, self.info.options):  # an earlier choice's goes with it
            options.pop("disable_additional_properties", None)
        config.update(backend=choice.backend, **choice.config)
        self.info.options.update(choice.as_options())
        # outlines has no CPU matcher here; xgrammar's reads the same constraint.
        self.matcher_backend = "guidance" if choice.backend == "guidance" else "xgrammar"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> VllmEngine:
        options = {
            "dtype": args.dtype, "max_model_len": args.max_model_len,
            "gpu_memory_utilization": args.gpu_memory_utilization,
            "enforce_eager": args.enforce_eager,
            "tensor_parallel_size": args.tensor_parallel_size,
            "load_format": args.load_format,
            "structured_outputs_config": {
                "backend": args.structured_outputs_backend,  # None: chosen per model
                "disable_any_whitespace": args.disable_any_whitespace},
        }
        from playground.engines.hardware import DEFAULT_GPU_MODEL

        return cls(args.model or DEFAULT_GPU_MODEL, options)

    def _load(self, progress: Progress) -> None:
        progress(0.05, "importing vllm (~20 s)")
        # vLLM's own top-p/top-k sampler, not FlashInfer's: flashinfer-python ships that
        # kernel as source, JIT-compiled with nvcc on the first sampled request (minutes, and
        # a failed request where no CUDA toolkit is installed). vLLM reads it from the
        # environment in its engine-core process, which inherits ours, so it cannot be
        # scoped to one call; setdefault keeps a value the user set.
        os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
        # Start vLLM's engine core with spawn, not fork: in the served app (not in a bare
        # script) the forked engine core failed with "Cannot re-initialize CUDA in forked
        # subprocess" on the H100 (vLLM 0.26, torch 2.11); spawn started it every time.
        # Read by vLLM when it starts the process, so it is set here, before; a value the
        # user set is kept.
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        guard_engine_core()
        self.tokenizer = own_tokenizer(self.model)
        if not self.backend_named:
            self._use_backend(choose_backend(self.tokenizer))
            log.info("grammar backend: %s", self.info.options["backend_choice"])
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        progress(0.3, f"starting vLLM with {self.model}: loading weights, torch.compile "
                      "and CUDA graphs (about a minute)")
        # Stats logging on: per-request timings (first token, decode) come from it.
        args = AsyncEngineArgs(model=self.model, disable_log_stats=False, **self.engine_options)
        self.llm = AsyncLLM.from_engine_args(args)
        if self.tokenizer is None:
            self.tokenizer = self.llm.get_tokenizer()
            self.warning = ("prompts are counted with vLLM's own tokenizer (transformers "
                            "could not load the model's): under load the event loop may "
                            "stall while vLLM copies it (see the log)")
        if self.backend_named and self.matcher_backend == "guidance":
            from playground.backends.guidance import guidance_misreads

            problem = guidance_misreads(self.tokenizer)
            if problem:
                self.warning = (f"the guidance backend cannot be trusted with this model: "
                                f"{problem}; start with --structured-outputs-backend xgrammar")
                log.warning(self.warning)
        self.context_length = self.engine_options.get("max_model_len")
        self.special_token_ids = frozenset(getattr(self.tokenizer, "all_special_ids", []))
        # The Tool call tab's tags as the model's own tokens (guidance needs them so);
        # in the options, copy as code writes them into what it exports.
        self.tag_ids = special_tag_ids(self.tokenizer)
        if self.tag_ids:
            self.info.options["tool_tag_ids"] = self.tag_ids

    def encode(self, prompt: str, settings: SamplingSettings) -> list[int]:
        """The prompt's ids with the playground's own tokenizer, one caller at a time: a
        fast tokenizer's encode sets its padding and truncation, so two at once can fail
        ("Already borrowed"). Short work (a chat template and an encode): called in a
        thread, or on the loop only by the bench's raw path."""
        with self._encode_lock:
            return encode_prompt(self.tokenizer, prompt, settings)

    def text_token_ids(self, text: str) -> list[int] | None:
        return self._text_ids.encode(text)

    def _encode_texts(self, texts: list[str]) -> list[list[int]]:
        """The texts' ids, in one call of the fast tokenizer's `encode_batch` (what its
        `encode` calls too), one text at a time where it has none."""
        with self._encode_lock:  # as `encode`: one caller at a time
            backend = getattr(self.tokenizer, "backend_tokenizer", None)
            if backend is None:
                return [list(self.tokenizer.encode(t, add_special_tokens=False))
                        for t in texts]
            # As transformers' own encode does first: a tokenizer.json may turn them on.
            backend.no_padding()
            backend.no_truncation()
            return [list(e.ids) for e in backend.encode_batch(texts, add_special_tokens=False)]

    def count_prompt_tokens(self, prompt: str, settings: SamplingSettings) -> int | None:
        return len(self.encode(prompt, settings))

    def check(self, constraint: Constraint) -> list[str]:
        """vLLM's own validation, with this engine's backend and tokenizer."""
        from playground.errors import ConstraintError

        config = self.engine_options["structured_outputs_config"]
        accepted, message = vllm_check(constraint, config["backend"],
                                       config["disable_any_whitespace"], self.tokenizer)
        if not accepted:
            raise ConstraintError(f"{constraint.mode}: vLLM rejects it: {message}")
        return []

    def _params(self, constraint: Constraint | None, settings: SamplingSettings) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        backend = self.engine_options["structured_outputs_config"]["backend"]
        structured = (StructuredOutputsParams(**structured_outputs_kwargs(constraint, backend,
                                                                          self.tag_ids))
                      if constraint is not None else None)
        return SamplingParams(**sampling_kwargs(settings), structured_outputs=structured,
                              output_kind=RequestOutputKind.DELTA)

    async def stream(self, prompt: str, constraint: Constraint | None,
                     settings: SamplingSettings, inspect: bool = False
                     ) -> AsyncIterator[Chunk]:
        await self.wait_ready()
        params = self._params(constraint, settings)
        prompt_ids = await asyncio.to_thread(self.encode, prompt, settings)
        request_id = f"playground-{next(self._ids)}"
        total = 0
        finished = False
        outputs = self.llm.generate({"prompt_token_ids": prompt_ids}, params, request_id)
        try:
            async for output in outputs:
                completion = output.outputs[0]
                total += len(completion.token_ids)
                if not output.finished:
                    yield Chunk(text=completion.text, output_tokens=total,
                                token_ids=list(completion.token_ids))
                    continue
                finished = True
                reason = completion.finish_reason
                yield Chunk(text=completion.text, output_tokens=total, done=True,
                            token_ids=list(completion.token_ids),
                            finish_reason=reason, prompt_tokens=len(prompt_ids),
                            error=self._explain_error(constraint) if reason == "error" else None,
                            engine_timings=_timings(output.metrics))
        except Exception as exc:
            self.poll_health()
            if self.failure:
                raise EngineDead(self.dead_message()) from exc
            raise
        finally:
            # Stopped or disconnected: the request leaves the engine now, not at max tokens.
            # Closing vLLM's generator aborts it too; the explicit abort covers a request
            # whose generator never started.
            await outputs.aclose()
            if not finished and self.failure is None:
                try:
                    await self.llm.abort(request_id)
                except Exception:
                    log.exception("vLLM could not abort request %s", request_id)

    async def inspect_distributions(self, prompt: str, settings: SamplingSettings,
                                    output_ids: list[int]) -> list[TokenDist]:
        """vLLM applies the grammar's bitmask before its sampler computes logprobs, so a
        constrained request's own logprobs are the masked ones. One prefill of prompt plus
        output with `prompt_logprobs` gives the model's own distribution at each output
        position (prompt logprobs are computed from the raw logits)."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        await self.wait_ready()
        prompt_ids = await asyncio.to_thread(self.encode, prompt, settings)
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=TOP_K,
                                output_kind=RequestOutputKind.FINAL_ONLY)
        final = None
        async for output in self.llm.generate({"prompt_token_ids": prompt_ids + output_ids},
                                              params, f"inspect-{next(self._ids)}"):
            final = output
        if final is None or final.prompt_logprobs is None:
            raise RuntimeError("vLLM returned no prompt logprobs")
        entries = final.prompt_logprobs[len(prompt_ids):]
        return [distribution(entry, token) for entry, token in zip(entries, output_ids,
                                                                    strict=True)]

    def poll_health(self) -> None:
        """vLLM's engine core is a process of its own: killed (out of memory, kill -9) it
        leaves AsyncLLM `errored`. The engine is then failed for good: no restart."""
        llm = getattr(self, "llm", None)
        if llm is not None and self.failure is None and llm.errored:
            self.mark_failed(death_reason(llm))

    async def raw_request(self, prompt: str, constraint: Constraint | None,
                          settings: SamplingSettings) -> dict[str, Any]:
        """A bare `AsyncLLM.generate`: the same request with nothing of the playground."""
        await self.wait_ready()
        start = time.perf_counter()
        params = self._params(constraint, settings)
        ids = self.encode(prompt, settings)
        tokens, ttft = 0, None
        async for output in self.llm.generate({"prompt_token_ids": ids}, params,
                                              f"raw-{next(self._ids)}"):
            tokens += len(output.outputs[0].token_ids)
            if ttft is None and tokens:
                ttft = time.perf_counter() - start
        return {"tokens": tokens, "ttft_s": ttft, "latency_s": time.perf_counter() - start}

    def _explain_error(self, constraint: Constraint | None) -> str:
        """vLLM sends only finish_reason "error"; recover the reason where we can."""
        reason = "vLLM failed this request (finish_reason 'error', no text)"
        if constraint is None:
            return reason + "; the server log says why"
        try:
            from playground.backends.xgrammar import to_grammar

            to_grammar(constraint)
        except Exception as exc:
            return f"{reason}: {exc}"
        return reason + ": the constraint failed inside the engine; the server log says why"

    def shutdown(self) -> None:
        if getattr(self, "llm", None) is not None:
            self.llm.shutdown()
            self.llm = None


_original_engine_core: Any = None


def guard_engine_core() -> None:
    """Make vLLM's engine core process end with this one, however this one ends.

    vLLM 0.26 gives its engine core no watch on its parent (only the engine core's own
    workers watch it, through a pipe), so a server killed with SIGKILL left it running with
    the GPU's memory, and the next start failed for want of memory. vLLM starts it with
    `EngineCoreProc.run_engine_core` as the process's target; that is wrapped here, and
    the spawned process imports this module to run the wrapper."""
    global _original_engine_core
    from vllm.v1.engine.core import EngineCoreProc

    if _original_engine_core is None:
        _original_engine_core = EngineCoreProc.run_engine_core
        EngineCoreProc.run_engine_core = staticmethod(  # type: ignore[method-assign]
            functools.partial(run_engine_core, os.getpid()))


def run_engine_core(server_pid: int, *args: Any, **kwargs: Any) -> None:
    """vLLM's engine core, ended with the server (see guard_engine_core)."""
    # Not the kernel's parent-death signal: it would come when the loading thread that
    # started this process ends, right after the load.
    end_with_parent(server_pid, kernel=False)
    from vllm.v1.engine.core import EngineCoreProc

    from playground.engines import vllm_masks

    vllm_masks.install()

    # Spawned, this is a fresh interpreter: vLLM's own function. Forked, it is the saved one.
    (_original_engine_core or EngineCoreProc.run_engine_core)(*args, **kwargs)


TOP_K = 5  # alternatives the token inspector shows


def distribution(entry: dict[int, Any], token: int, k: int = TOP_K) -> TokenDist:
    """One position of vLLM's prompt logprobs ({token id: Logprob(logprob, rank)}: the top
    k and the token at that position) as the token inspector's TokenDist."""
    ranked = sorted(entry.items(), key=lambda item: item[1].logprob, reverse=True)
    top = [(token_id, float(value.logprob)) for token_id, value in ranked[:k]]
    chosen = entry[token]
    rank = chosen.rank if chosen.rank is not None else 1 + sum(
        value.logprob > chosen.logprob for value in entry.values())
    return TokenDist(top, float(chosen.logprob), int(rank))


def death_reason(llm: Any) -> str:
    """Why vLLM's engine core stopped, from its process's exit code where vLLM kept it."""
    try:
        codes = llm.engine_core.resources.engine_manager.finished_procs()
    except Exception:  # other vLLM versions keep their processes elsewhere
        codes = {}
    for name, code in codes.items():
        if code < 0:
            killer = signal.Signals(-code).name
            hint = " (the kernel's out-of-memory killer does this)" if killer == "SIGKILL" else ""
            return f"the vLLM engine core process {name} was killed by {killer}{hint}"
        return f"the vLLM engine core process {name} exited with code {code}; the log says why"
    return "the vLLM engine core stopped (EngineDeadError); the log says why"


def _timings(metrics: Any) -> dict[str, float]:
    """vLLM's own per-request timings (need stats logging, which this engine turns on)."""
    if metrics is None:
        return {}
    timings = {}
    if getattr(metrics, "first_token_latency", 0):
        timings["vllm_ttft_s"] = metrics.first_token_latency
    first, last = getattr(metrics, "first_token_ts", 0), getattr(metrics, "last_token_ts", 0)
    if first and last >= first:
        timings["vllm_decode_s"] = last - first
    queued, scheduled = getattr(metrics, "queued_ts", 0), getattr(metrics, "scheduled_ts", 0)
    if queued and scheduled >= queued:
        timings["vllm_queue_s"] = scheduled - queued
    return timings
