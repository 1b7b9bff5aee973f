"""Every preset (constrained and free) plus extra constraints, all clicks at once, on vLLM
with real weights, for one structured-outputs backend. Writes a JSON report.

    python tools/gpu/real_weights.py MODEL_FOLDER BACKEND OUT.json [ROUNDS]

Each round sends every click at once (as many browser sessions would): each click is the
playground's own path (service.run_request: constrained and unconstrained together).
"""

import asyncio
import json
import os
import sys
import time
from collections import Counter

from playground.core.presets import load_presets
from playground.engines.registry import defaults
from playground.engines.vllm_engine import VllmEngine
from playground.run.service import run_request

EXTRA = [  # (name, mode, constraint, prompt)
    ("key=value grammar", "grammar",
     'start: pair ("\\n" pair)*\npair: KEY "=" VALUE\nKEY: /[a-z_]+/\nVALUE: /[a-z0-9]+/',
     "Write three settings of a web server as key=value lines."),
    ("SQL plain rules", "grammar",
     'start: "SELECT " NAME ("," NAME)* " FROM " NAME\nNAME: /[a-zA-Z_][a-zA-Z0-9_]*/',
     "Generate an SQL query to show the 'username' and 'email' from the 'users' table."),
    ("digits", "regex", r"[0-9]{3}-[0-9]{4}", "Give me a phone extension."),
    ("colour", "choice", "red\ngreen\nblue", "What colour is the sky?"),
    ("person", "json", json.dumps({"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]}),
     "Describe Ada Lovelace as JSON."),
]


async def run_backend(folder: str, backend: str | None, rounds: int = 2) -> dict:
    """Every click at once, `rounds` times, on a fresh engine; the report with its summary.
    `backend` None: the engine's own choice for the model (backends/choice.py)."""
    named = ["--structured-outputs-backend", backend] if backend else []
    args = defaults(["--engine", "vllm", "--model", folder, *named, "--gpu-memory-utilization",
                     os.environ.get("GPU_MEMORY_UTILIZATION", "0.3"), "--max-model-len", "4096"])
    engine = VllmEngine.from_args(args)
    start = time.perf_counter()
    engine.load()
    load_s = time.perf_counter() - start
    clicks = [(p.name, p.mode, p.constraint_text, p.prompt, p.settings.model_dump())
              for p in load_presets().values()]
    clicks += [(name, mode, text, prompt, {"max_tokens": 64}) for name, mode, text, prompt
               in EXTRA]
    runs = []
    try:
        for round_ in range(rounds):
            began = time.perf_counter()
            results = await asyncio.gather(*(run_request(engine, mode, text, prompt, options)
                                             for _, mode, text, prompt, options in clicks),
                                           return_exceptions=True)
            wall = time.perf_counter() - began
            for (name, mode, _, _, _), result in zip(clicks, results, strict=True):
                if isinstance(result, BaseException):
                    runs.append({"round": round_, "name": name, "mode": mode,
                                 "exception": repr(result)})
                    continue
                for side in ("constrained", "unconstrained"):
                    r = result[side]
                    runs.append({"round": round_, "name": name, "mode": mode, "side": side,
                                 **{k: r.get(k) for k in (
                                     "text", "verdict", "errors", "constraint_escaped",
                                     "finish_reason", "output_tokens", "latency_s", "ttft_s",
                                     "tokens_per_s", "engine_timings")}})
            print(f"round {round_}: {len(clicks)} clicks at once in {wall:.2f} s", flush=True)
    finally:
        engine.shutdown()
    constrained = [r for r in runs if r.get("side") == "constrained"]
    summary = {
        "backend": engine.info.options["backend"],
        "backend_choice": engine.info.options.get("backend_choice"), "model": folder,
        "load_s": load_s, "clicks": len(clicks),
        "rounds": rounds, "engine_warning": engine.warning,
        "constrained": dict(Counter(r["verdict"] for r in constrained)),
        "unconstrained": dict(Counter(r.get("verdict") for r in runs
                                      if r.get("side") == "unconstrained")),
        "escaped": sum(bool(r["constraint_escaped"]) for r in constrained),
        "exceptions": sum("exception" in r for r in runs),
        "max_tokens_per_s": max((r["tokens_per_s"] or 0) for r in runs if "side" in r),
    }
    return {"summary": summary, "runs": runs}


def main() -> None:
    folder, backend, out = sys.argv[1], sys.argv[2], sys.argv[3]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    report = asyncio.run(run_backend(folder, backend, rounds))
    print("SUMMARY " + json.dumps(report["summary"]), flush=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":  # the validation pool's workers import this module again
    main()
