"""Where the app's own process spends a JSON-constrained burst of 128 requests, against a
free one (GPU machine; issue 22): cProfile of the event loop's thread, through the app's
vLLM engine, the playground's path as `bench` drives it.

  python3 tools/gpu/path_profile.py [--requests 128] > path_profile.txt
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=128)
    args = parser.parse_args()
    from dummy_engine import loaded_engine

    from playground.bench import engine_bench as bench
    from playground.core.settings import SamplingSettings
    from playground.judging import judge

    engine = loaded_engine()
    judge.warm_up()

    async def measure() -> None:
        await engine.raw_request("Hi", None, SamplingSettings(max_tokens=1))
        await bench.throughput(engine, True, "playground", [16] * 8)
        lengths = [256] * args.requests
        for constrained in (True, False, True, False):
            for path in ("raw", "playground"):
                profile = cProfile.Profile()
                cpu = time.process_time()
                profile.enable()
                run = await bench.throughput(engine, constrained, path, lengths)
                profile.disable()
                print(f"\n==== {path} {'constrained' if constrained else 'free'} @"
                      f"{args.requests}: {run['tokens_per_s']:.0f} tok/s, wall "
                      f"{run['wall_s']:.2f} s, process CPU {time.process_time() - cpu:.2f} s")
                if path == "playground" and constrained:
                    out = io.StringIO()
                    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(22)
                    print(out.getvalue()[-6000:])

    try:
        asyncio.run(measure())
    finally:
        engine.shutdown()


if __name__ == "__main__":
    main()
