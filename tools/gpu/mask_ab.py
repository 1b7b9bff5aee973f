"""Batched grammar masks on and off, side by side, through the app's own vLLM engine
(AsyncLLM with its engine core in a process of its own, as `python app.py` runs it):
JSON-constrained and free throughput at 32 and 128 requests, raw vLLM requests and the
playground's path, each configuration in a fresh process (GPU machine; issue 22).

  python3 tools/gpu/mask_ab.py [--order 0 1 0] > mask_ab.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from typing import Any


def one(batch_masks: bool, levels: list[int]) -> dict[str, Any]:
    from playground.engines import vllm_masks

    os.environ[vllm_masks.ENV] = "1" if batch_masks else "0"
    from playground.bench import engine_bench as bench
    from playground.core.settings import SamplingSettings
    from playground.engines.registry import create_engine, defaults

    engine = create_engine(defaults([
        "--engine", "vllm", "--model", os.environ["GPU_MODEL"], "--load-format", "dummy",
        "--disable-any-whitespace", "--gpu-memory-utilization", "0.85"]))
    engine.load()

    async def measure() -> dict[str, Any]:
        await engine.raw_request("Hi", None, SamplingSettings(max_tokens=1))
        await bench.throughput(engine, True, "raw", [16] * 4)  # the schema's compile
        rows: dict[str, Any] = {}
        for level in levels:
            for path in ("raw", "playground"):
                constrained = await bench.throughput(engine, True, path, [256] * level)
                free = await bench.throughput(engine, False, path, constrained["lengths"])
                rows[f"{path}@{level}"] = {
                    "constrained_tokens_per_s": constrained["tokens_per_s"],
                    "free_tokens_per_s": free["tokens_per_s"],
                    "constrained_free_ratio": constrained["tokens_per_s"] / free["tokens_per_s"],
                    "constraint_escaped": constrained["constraint_escaped"],
                    "mean_tokens": constrained["tokens"] / level}
        return rows

    try:
        return {"batch_masks": batch_masks, "levels": asyncio.run(measure())}
    finally:
        engine.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--order", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--levels", nargs="+", type=int, default=[32, 128])
    parser.add_argument("--one", type=int)
    args = parser.parse_args()
    if args.one is not None:
        print("AB " + json.dumps(one(bool(args.one), args.levels)), flush=True)
        return
    reports = []
    for batch_masks in args.order:
        try:
            done = subprocess.run([sys.executable, __file__, "--one", str(batch_masks),
                                   "--levels", *map(str, args.levels)],
                                  capture_output=True, text=True, timeout=240)
        except subprocess.TimeoutExpired:
            reports.append({"batch_masks": bool(batch_masks), "error": "timed out"})
            continue
        lines = [line for line in done.stdout.splitlines() if line.startswith("AB ")]
        if not lines:
            reports.append({"batch_masks": bool(batch_masks), "error": done.stderr[-2000:]})
            print(done.stderr[-1500:], file=sys.stderr)
            continue
        report = json.loads(lines[-1].removeprefix("AB "))
        reports.append(report)
        for name, row in report["levels"].items():
            print(f"batch_masks={report['batch_masks']!s:5} {name:14} constrained "
                  f"{row['constrained_tokens_per_s']:8.0f} free {row['free_tokens_per_s']:8.0f}"
                  f" c/f {row['constrained_free_ratio']:.3f} escaped "
                  f"{row['constraint_escaped']} tokens {row['mean_tokens']:.0f}",
                  file=sys.stderr, flush=True)
    print(json.dumps(reports, indent=1))


if __name__ == "__main__":
    main()
