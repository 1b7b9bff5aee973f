"""What this machine can run, answered without importing torch or vllm (so the page is
served before the model loads)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

DEFAULT_GPU_MODEL = "Qwen/Qwen2.5-7B-Instruct"


def gpu_available() -> bool:
    """Cheap (no torch import) so the page is served before the model loads."""
    has_gpu = Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None
    return has_gpu and importlib.util.find_spec("vllm") is not None


def require_gpu() -> None:
    if not gpu_available():
        raise RuntimeError("--engine vllm needs an NVIDIA GPU (CUDA) and the vllm package, "
                           "and this machine has no GPU; use --engine cpu or --engine auto")


