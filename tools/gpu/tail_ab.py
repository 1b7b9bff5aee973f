"""Where the playground's path loses against raw vLLM at 128 constrained requests: the
same bursts with the work after the stream switched off piece by piece, one engine, the
variants in turns (GPU machine; issue 22).

Variants: `full` (the playground as it runs), `no_tokenization` (the tokenization check
off: `engine.text_token_ids` answers None), `no_judge` (neither the verdict nor the
check: `service.judge` answers at once). Raw vLLM's burst runs before each, as the bench's.

  python3 tools/gpu/tail_ab.py [--level 128] [--rounds 3] > tail_ab.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--level", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from dummy_engine import loaded_engine

    from playground.bench import engine_bench as bench
    from playground.core.settings import SamplingSettings
    from playground.judging.validation import Verdict
    from playground.run import service

    engine = loaded_engine()
    own_ids, own_judge = engine.text_token_ids, service.judge

    async def instant(*_: Any, **__: Any) -> Verdict:
        return Verdict("valid", [])

    variants = {
        "full": (own_ids, own_judge),
        "no_tokenization": (lambda text: None, own_judge),
        "no_judge": (lambda text: None, instant),
    }

    async def measure() -> dict[str, Any]:
        await engine.raw_request("Hi", None, SamplingSettings(max_tokens=1))
        await bench.throughput(engine, True, "raw", [16] * 4)  # the schema's compile
        found: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, (ids, judge) in variants.items():
                raw = await bench.throughput(engine, True, "raw", [256] * args.level)
                engine.text_token_ids, service.judge = ids, judge
                try:
                    ours = await bench.throughput(engine, True, "playground",
                                                  [256] * args.level)
                finally:
                    engine.text_token_ids, service.judge = own_ids, own_judge
                found[name].append(ours["tokens_per_s"] / raw["tokens_per_s"])
        return {name: {"median": statistics.median(r), "rounds": r}
                for name, r in found.items()}

    try:
        report = {"level": args.level, "backend": engine.info.options.get("backend"),
                  "throughput_ratio": asyncio.run(measure())}
    finally:
        engine.shutdown()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":  # the validation pool's workers import this module again
    main()
