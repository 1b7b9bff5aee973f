"""Every grammar backend's name, in one place.

Three name spaces, since each library and vLLM spell them differently:
- `VLLM_BACKENDS`: vLLM's `--structured-outputs-backend` values (`auto` is vLLM's choice);
- `MATCHER_BACKENDS`: the libraries whose CPU matchers the playground runs itself
  (judging, test strings, token replay);
- `DOCTOR_BACKENDS`: what the doctor compiles: each library raw, and vLLM's own request
  check of each (`vllm:<name>`).
"""

from __future__ import annotations

from typing import Literal

# xgrammar where a tokenizer is not known to suit guidance: with real weights (SmolLM2 on
# the H100, vLLM 0.26) guidance failed 6 of 42 constrained requests and let one escape its
# regex, because llguidance misreads tokenizers whose tokenizer.json decoder is not plain
# ByteLevel (docs/engines.md). vLLM's backend is chosen per model (backends/choice.py);
# the CPU engine, the CLI's checks and copy as code start from this one.
DEFAULT_BACKEND = "xgrammar"

VLLM_BACKENDS: tuple[str, ...] = ("auto", "xgrammar", "guidance", "outlines")

Backend = Literal["xgrammar", "guidance"]
MATCHER_BACKENDS: tuple[Backend, ...] = ("xgrammar", "guidance")

RAW_BACKENDS: tuple[str, ...] = ("xgrammar", "guidance", "outlines")
VLLM_CHECKS: tuple[str, ...] = tuple(f"vllm:{name}" for name in RAW_BACKENDS)
DOCTOR_BACKENDS: tuple[str, ...] = (*RAW_BACKENDS, *VLLM_CHECKS)
