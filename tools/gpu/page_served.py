"""Seconds from launch to the page served, `--runs` fresh launches of the app with the vLLM
engine (killed once served; GPU machine; issue 22's page goal).

  python3 tools/gpu/page_served.py [--runs 3] -- [app flags]
"""

from __future__ import annotations

import argparse
import json
import statistics


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("app_args", nargs="*")
    args = parser.parse_args()
    from playground.bench.engine_bench import _wait_for_gpu_memory
    from playground.bench.launch import launched_app

    times = []
    for _ in range(args.runs):
        with launched_app(args.app_args) as app:
            times.append(app.wait_served(limit_s=120))
        _wait_for_gpu_memory()
    print(json.dumps({"page_served_s": times, "median": statistics.median(times)}))


if __name__ == "__main__":
    main()
