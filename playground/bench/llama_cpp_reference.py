"""llama.cpp on the CPU engine's own GGUF: a reference point for `bench --engine cpu`.

Issue 18's goal: the embedded engine's single-stream constrained decode at least 0.8 of
llama.cpp's, same machine, same weights file. llama-cpp-python is an optional extra built
from source (`pip install -e '.[llamacpp]'`); without it, everything here says it skipped.
Timed: `Llama.create_completion` (plain completion: SmolLM2's GGUF has no chat template and
`create_chat_completion` would fall back to Llama-2's) on the token ids of the chat text our
engine encodes, temperature 0, free and constrained by llama.cpp's own GBNF grammar made from
the same JSON schema, in a process of its own (see `_apart`).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from playground.core.presets import load_presets
from playground.core.settings import SamplingSettings, chat_messages
from playground.engines.base import Engine
from playground.engines.cpu_models import CHATML, DEFAULT_CPU_MODEL, gguf_path

# The bench's CPU JSON figure's preset (engine_bench.MODES_PRESETS["json"], which imports us).
JSON_PRESET = "Iconic 90s car"
MAX_TOKENS = 64
GOAL_RATIO = 0.8  # ours / llama.cpp, single-stream constrained decode tok/s


def missing() -> str | None:
    """Why llama.cpp cannot be measured here; None when it can."""
    try:
        import llama_cpp  # noqa: F401
    except (ImportError, OSError) as exc:  # OSError: a built library that fails to load
        return (f"llama-cpp-python is not installed ({type(exc).__name__}: {exc}); "
                "`pip install -e '.[llamacpp]'` builds it (docs/benchmarks.md)")
    return None


def chat_text(prompt: str, settings: SamplingSettings, tokenizer: Any = None) -> str:
    """The prompt as the engine's chat template renders it. Without the engine's
    tokenizer, CHATML (the template SmolLM2 was trained with, minus HF's system prompt)."""
    messages = chat_messages(prompt, settings)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=True)
    import jinja2  # transformers renders templates with these options too

    template = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(CHATML)
    return template.render(messages=messages, add_generation_prompt=True)


def _one(llm: Any, ids: list[int], grammar: Any, max_tokens: int) -> dict[str, Any]:
    """One greedy completion, timed per sampled token."""
    import llama_cpp

    seen: list[tuple[int, float]] = []  # (ids so far, when)

    def stamp(input_ids: Any, logits: Any) -> bool:
        # Called once per sampled token with the ids so far, and once more after the last
        # one with fewer ids: only a call with more ids than the one before is a new token.
        if not seen or len(input_ids) > seen[-1][0]:
            seen.append((len(input_ids), time.perf_counter()))
        return False

    llm.reset()  # no prefix reuse: every run evaluates the whole prompt, as ours does
    start = time.perf_counter()
    out = llm.create_completion(ids, max_tokens=max_tokens, temperature=0.0, grammar=grammar,
                                stopping_criteria=llama_cpp.StoppingCriteriaList([stamp]))
    total, stamps = time.perf_counter() - start, [when for _, when in seen]
    # Counted like ours: every sampled token, the end-of-turn one included.
    tokens = len(stamps)
    rate = (tokens - 1) / (stamps[-1] - stamps[0]) if tokens > 1 else None
    return {"tokens": tokens, "ttft_s": stamps[0] - start if stamps else None,
            "tokens_per_s": rate, "total_s": total, "text": out["choices"][0]["text"],
            "finish_reason": out["choices"][0]["finish_reason"]}


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {key: statistics.median(run[key] for run in runs)
                           for key in ("ttft_s", "tokens_per_s", "total_s")
                           if all(run[key] is not None for run in runs)}
    # Greedy decoding: every repeat says the same; the last one stands for all.
    row.update({key: runs[-1][key] for key in ("tokens", "text", "finish_reason")})
    return row


def measure(prompt_text: str, schema: dict[str, Any], max_tokens: int = MAX_TOKENS,
            reps: int = 3, model_path: str | None = None
            ) -> tuple[dict[str, Any] | None, str | None]:
    """llama.cpp's single-stream decode, constrained and free: (figures, None), or (None,
    why not). Medians of `reps` runs after one warm-up run of each."""
    if reason := missing():
        return None, reason
    import llama_cpp

    path = Path(model_path) if model_path else gguf_path()
    threads = os.cpu_count() or 1  # as many as torch uses here: one per core
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, n_threads=threads, verbose=False)
    grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    # special=True: the template's <|im_start|> markers are single tokens, as in ours.
    ids = llm.tokenize(prompt_text.encode("utf-8"), add_bos=False, special=True)
    result: dict[str, Any] = {
        "llama_cpp_python": metadata.version("llama_cpp_python"), "model_path": str(path),
        "n_threads": threads, "max_tokens": max_tokens, "reps": reps, "prompt_tokens": len(ids),
        "how": "create_completion on the chat-formatted prompt's token ids, temperature 0",
    }
    for name, used in (("constrained", grammar), ("free", None)):
        _one(llm, ids, used, max_tokens)  # warm-up: first-call allocations, page faults
        result[name] = _medians([_one(llm, ids, used, max_tokens) for _ in range(reps)])
    return result, None  # `llm` goes here: its weights and KV cache are freed now

async def _apart(**arguments: Any) -> tuple[dict[str, Any] | None, str | None]:
    """`measure` in a fresh process. In the bench's own, torch's OpenMP team (on the
    engine's thread) and llama.cpp's compete: llama.cpp ran at half speed on 2 cores."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", __name__, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await child.communicate(json.dumps(arguments).encode())
    if child.returncode:
        return None, f"the llama.cpp process failed: {err.decode().strip()[-300:]}"
    found, reason = json.loads(out.decode().strip().splitlines()[-1])
    return found, reason


async def _our_free(engine: Engine, prompt: str, settings: SamplingSettings, judge: Any,
                    reps: int) -> dict[str, Any]:
    """Our engine's free single-stream decode on the same prompt and max tokens (the bench
    has no such figure: its free runs are throughput runs)."""
    from playground.run.service import stream_run

    runs = [[r async for r in stream_run(engine, prompt, None, settings, judge)][-1]
            for _ in range(reps + 1)]  # the first is a warm-up
    rates = [(r.output_tokens - 1) / (r.latency_s - r.ttft_s) for r in runs[1:]]
    return {"tokens": runs[-1].output_tokens, "tokens_per_s": statistics.median(rates),
            "ttft_s": statistics.median(r.ttft_s for r in runs[1:])}


async def section(engine: Engine, engine_kind: str, single: dict[str, Any], reps: int,
                  log: Any) -> dict[str, Any] | None:
    """The report's `llama_cpp` entry: None for other engines, {"skipped": why} without
    llama.cpp, else its figures beside ours and the ratio the goal is about."""
    if engine_kind != "cpu":
        return None
    spec = engine.info.model
    reason = missing() or (None if spec == DEFAULT_CPU_MODEL or spec.endswith(".gguf") else
                           f"--cpu-model {spec} is not a GGUF")
    if reason:
        log(f"llama.cpp reference: skipped, {reason}")
        return {"skipped": reason}
    preset = load_presets()[JSON_PRESET]
    settings = preset.settings.model_copy(update={"temperature": 0.0, "max_tokens": MAX_TOKENS})
    log(f"llama.cpp reference, {JSON_PRESET!r}, max {MAX_TOKENS} tokens, one stream:")
    ours_free = await _our_free(engine, preset.prompt, settings, preset.to_constraint(), reps)
    text = chat_text(preset.prompt, settings, getattr(engine, "tokenizer", None))
    path = str(gguf_path() if spec == DEFAULT_CPU_MODEL else Path(spec).expanduser())
    found, reason = await _apart(prompt_text=text, schema=preset.constraint,
                                 max_tokens=MAX_TOKENS, reps=reps, model_path=path)
    if found is None:
        return {"skipped": reason}
    json_row = single["json"]["playground"]
    ours = json_row["tokens_per_s"]
    found.update(ours={"constrained": {"tokens_per_s": ours, "tokens": json_row["output_tokens"]},
                       "free": ours_free, "dtype": engine.info.options.get("dtype")},
                 ratio=ours / found["constrained"]["tokens_per_s"],
                 free_ratio=ours_free["tokens_per_s"] / found["free"]["tokens_per_s"])
    log(f"  constrained {found['constrained']['tokens_per_s']:.1f} tok/s (ours {ours:.1f}), "
        f"free {found['free']['tokens_per_s']:.1f} (ours {ours_free['tokens_per_s']:.1f})")
    return found


def print_section(report: dict[str, Any]) -> None:
    """The llama.cpp lines of the bench's table; nothing for engines it does not apply to."""
    found = report.get("llama_cpp")
    if found and "skipped" in found:
        print(f"\nllama.cpp reference: skipped, {found['skipped']}")
    if not found or "skipped" in found:
        return
    ours = found["ours"]
    print(f"\nllama.cpp reference (same GGUF, its own grammar): llama-cpp-python "
          f"{found['llama_cpp_python']}, {found['n_threads']} threads, {found['prompt_tokens']}"
          f" prompt tokens, max {found['max_tokens']}; ours {ours['dtype']}")
    print(f"{'decode':12} {'ours tok/s':>10} {'llama.cpp':>10} {'ratio':>6} {'tokens':>7}  ttft s")
    for name, ratio in (("constrained", found["ratio"]), ("free", found["free_ratio"])):
        theirs = found[name]
        print(f"{name:12} {ours[name]['tokens_per_s']:10.1f} {theirs['tokens_per_s']:10.1f} "
              f"{ratio:6.3f} {theirs['tokens']:7} {theirs['ttft_s']:7.3f}")
    print(f"(goal: constrained ratio >= {GOAL_RATIO}; ours constrained: the JSON row above; "
          "tokens and ttft: llama.cpp's)")


if __name__ == "__main__":  # `_apart`'s child: arguments in on stdin, figures out on stdout
    print(json.dumps(measure(**json.load(sys.stdin))))
