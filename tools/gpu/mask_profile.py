"""Where a JSON-constrained step's time goes in vLLM's engine core, at 32 and 128 requests
(GPU machine; issue 22). Each configuration runs in a fresh process with the engine core
in that process (VLLM_ENABLE_V1_MULTIPROCESSING=0), so its methods can be timed:

  python3 tools/gpu/mask_profile.py [--levels 32 128] > profile.json

Per configuration (backend; vLLM's own mask filling or playground.engines.vllm_masks) and
level: constrained and free throughput (free requests get each constrained request's
length), the engine core's steps, and the time spent in the grammar bitmask, in
`update_from_output` (where grammars accept tokens) and in `schedule`, per step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"},
                                           "year": {"type": "integer"},
                                           "tags": {"type": "array", "items": {"type": "string"}}},
          "required": ["name", "year", "tags"]}
TOPICS = ["a car", "a city", "a book", "a song", "a planet", "a dog", "a river", "a game"]
CONFIGS = [("xgrammar", False), ("xgrammar", True), ("guidance", False), ("guidance", True)]
TIMED = {"vllm.v1.structured_output": ["StructuredOutputManager.grammar_bitmask"],
         "vllm.v1.core.sched.scheduler": ["Scheduler.update_from_output", "Scheduler.schedule"],
         "vllm.v1.core.sched.async_scheduler": ["AsyncScheduler.update_from_output",
                                                "AsyncScheduler.schedule"],
         "vllm.v1.engine.core": ["EngineCore.step", "EngineCore.step_with_batch_queue"]}
seconds: dict[str, float] = defaultdict(float)
calls: dict[str, int] = defaultdict(int)


def _timed(name: str, function: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds[name] += time.perf_counter() - start
            calls[name] += 1
    return wrapper


def _install_timers() -> list[str]:
    import importlib

    timed = []
    for module_name, names in TIMED.items():
        module = importlib.import_module(module_name)
        for name in names:
            class_name, method = name.split(".")
            cls = getattr(module, class_name, None)
            if cls is not None and method in cls.__dict__:  # its own, not inherited
                setattr(cls, method, _timed(name, cls.__dict__[method]))
                timed.append(name)
    return timed


def one(backend: str, batch_masks: bool, levels: list[int]) -> dict[str, Any]:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    from playground.engines import vllm_masks

    os.environ[vllm_masks.ENV] = "1" if batch_masks else "0"
    vllm_masks.install()
    timed = _install_timers()
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    llm = LLM(model=os.environ["GPU_MODEL"], load_format="dummy", max_model_len=4096,
              gpu_memory_utilization=0.85,
              structured_outputs_config={"backend": backend, "disable_any_whitespace": True})
    config = llm.llm_engine.vllm_config
    constrained = SamplingParams(max_tokens=256, temperature=0.0,
                                 structured_outputs=StructuredOutputsParams(json=SCHEMA))
    llm.generate(["Describe a car as JSON."] * 4, constrained, use_tqdm=False)  # warm-up
    report: dict[str, Any] = {
        "backend": backend, "batch_masks": batch_masks, "timed": timed,
        "async_scheduling": config.scheduler_config.async_scheduling,
        "max_num_seqs": config.scheduler_config.max_num_seqs, "levels": {}}
    for level in levels:
        prompts = [f"Describe {TOPICS[i % len(TOPICS)]} number {i} as JSON with name, year "
                   "and tags." for i in range(level)]
        row: dict[str, Any] = {}
        for side in ("constrained", "free"):
            if side == "constrained":
                params: Any = constrained
            else:  # each free request as long as its constrained twin
                params = [SamplingParams(max_tokens=n, min_tokens=n, temperature=0.0)
                          for n in row["constrained"]["lengths"]]
            seconds.clear()
            calls.clear()
            start = time.perf_counter()
            outputs = llm.generate(prompts, params, use_tqdm=False)
            wall = time.perf_counter() - start
            lengths = [len(output.outputs[0].token_ids) for output in outputs]
            steps = calls.get("EngineCore.step_with_batch_queue") or calls.get("EngineCore.step")
            row[side] = {
                "wall_s": wall, "tokens": sum(lengths), "tokens_per_s": sum(lengths) / wall,
                "lengths": lengths, "steps": steps,
                "errors": sum(output.outputs[0].finish_reason not in ("stop", "length")
                              for output in outputs),
                "ms_per_step": {name: 1000 * total / max(1, steps or 1)
                                for name, total in seconds.items()},
                "calls": dict(calls)}
        row["constrained_free_ratio"] = (row["constrained"]["tokens_per_s"]
                                         / row["free"]["tokens_per_s"])
        report["levels"][str(level)] = row
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--one", nargs=2, metavar=("BACKEND", "BATCH_MASKS"))
    parser.add_argument("--configs", nargs="+", metavar="BACKEND:BATCH_MASKS",
                        help="e.g. xgrammar:1 guidance:0 (default: all four)")
    args = parser.parse_args()
    if args.one:
        report = one(args.one[0], args.one[1] == "1", args.levels)
        print("PROFILE " + json.dumps(report), flush=True)
        return
    reports = []
    configs = ([(item.split(":")[0], item.split(":")[1] == "1") for item in args.configs]
               if args.configs else CONFIGS)
    for backend, batch_masks in configs:
        try:
            done = subprocess.run([sys.executable, __file__, "--one", backend,
                                   "1" if batch_masks else "0", "--levels",
                                   *map(str, args.levels)], capture_output=True, text=True,
                                  timeout=190)
        except subprocess.TimeoutExpired:
            reports.append({"backend": backend, "batch_masks": batch_masks,
                            "error": "timed out"})
            continue
        lines = [line for line in done.stdout.splitlines() if line.startswith("PROFILE ")]
        if not lines:
            reports.append({"backend": backend, "batch_masks": batch_masks,
                            "error": done.stderr[-2000:]})
            continue
        report = json.loads(lines[-1].removeprefix("PROFILE "))
        reports.append(report)
        for level, row in report["levels"].items():
            per_step = row["constrained"]["ms_per_step"]
            print(f"{backend:9} batch_masks={batch_masks!s:5} @{level:>3}: constrained "
                  f"{row['constrained']['tokens_per_s']:8.0f} tok/s, free "
                  f"{row['free']['tokens_per_s']:8.0f}, c/f {row['constrained_free_ratio']:.3f};"
                  f" per step (ms): " + ", ".join(f"{k.split('.')[-1]} {v:.2f}"
                                                  for k, v in sorted(per_step.items())),
                  file=sys.stderr, flush=True)
    print(json.dumps(reports, indent=1))


if __name__ == "__main__":
    main()
