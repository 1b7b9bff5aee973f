"""The CPU engine's raw path: transformers' `generate` with xgrammar's logits processor.

This is what a user would write without the playground, so the bench compares the
playground's decoding loop against it on the same weights, tokens and grammar.
"""

from __future__ import annotations

import time
from typing import Any

from playground.core.settings import SamplingSettings


def generate(model: Any, tokenizer: Any, prompt_ids: list[int], compiled: Any,
             settings: SamplingSettings, start: float) -> dict[str, Any]:
    """Greedy `model.generate`: {"tokens", "ttft_s", "latency_s"} since `start` (taken
    before the grammar was compiled, as the playground's timing is)."""
    import torch
    import transformers
    import xgrammar as xgr

    first: list[float] = []

    class FirstToken(transformers.generation.streamers.BaseStreamer):
        calls = 0

        def put(self, value: Any) -> None:
            self.calls += 1
            if self.calls == 2:  # the first call hands over the prompt
                first.append(time.perf_counter())

        def end(self) -> None:
            pass

    ids = torch.tensor([prompt_ids])
    processors = [xgr.contrib.hf.LogitsProcessor(compiled)] if compiled is not None else []
    stops = {"stop_strings": settings.stop, "tokenizer": tokenizer} if settings.stop else {}
    with torch.inference_mode():
        out = model.generate(
            ids, max_new_tokens=settings.max_tokens, do_sample=False, temperature=None,
            top_p=None, top_k=None, logits_processor=processors, streamer=FirstToken(),
            pad_token_id=tokenizer.eos_token_id, **stops)
    end = time.perf_counter()
    return {"tokens": out.shape[1] - ids.shape[1], "ttft_s": first[0] - start if first else None,
            "latency_s": end - start}
