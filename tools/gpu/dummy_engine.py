"""The app's own vLLM engine as the GPU tools measure it: $GPU_MODEL with dummy weights,
whitespace restricted (random weights fill JSON with it otherwise), most of the GPU."""

from __future__ import annotations

import os
from typing import Any


def loaded_engine() -> Any:
    from playground.engines.registry import create_engine, defaults

    engine = create_engine(defaults([
        "--engine", "vllm", "--model", os.environ["GPU_MODEL"], "--load-format", "dummy",
        "--disable-any-whitespace", "--gpu-memory-utilization", "0.85"]))
    engine.load()
    return engine
