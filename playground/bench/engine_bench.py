"""`python -m playground bench`: the playground's path against the raw engine, side by side.

Every ratio is measured in one run, on one loaded model: the playground's path is what a
click does without the browser (`service.stream_run`: chat template, streaming, timing,
validation); the raw path is the engine alone doing the same work (raw vLLM `AsyncLLM`
requests, or raw transformers `generate` with xgrammar's logits processor, on
transformers' own Llama), with the same prompt, constraint, settings and weights.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from playground.bench import cpu_batching, llama_cpp_reference
from playground.core.constraints import Constraint
from playground.core.presets import load_presets
from playground.core.settings import SamplingSettings
from playground.engines.base import Engine
from playground.engines.registry import create_engine, engine_argv
from playground.judging import judge
from playground.run.service import stream_run

MODES_PRESETS = {"choice": "Sentiment", "regex": "Email address", "json": "Iconic 90s car",
                 "grammar": "SQL SELECT"}
GOALS = {"latency_ratio": ("<=", 1.03), "throughput_ratio@8": (">=", 0.97),
         "throughput_ratio@32": (">=", 0.97), "throughput_ratio@128": (">=", 0.97),
         "json_constrained_free_ratio@32": (">=", 0.9),
         "json_constrained_free_ratio@128": (">=", 0.75),
         "page_served_s": ("<=", 5.0), "cpu_tokens_per_s": (">=", 30.0),
         "cpu_ttft_s": ("<", 1.0), "cpu_second_start_s": ("<", 5.0),
         "inspect_overhead": ("<=", 0.15), "cpu_vs_llama_cpp": (">=", 0.8),
         "cpu_click_batched_serial": ("<=", 0.6), "cpu_sessions_aggregate": (">=", 2.5)}
# Prompts for throughput runs: different, so no prefix cache makes one request free.
TOPICS = ["a car", "a city", "a book", "a song", "a planet", "a dog", "a river", "a game"]
THROUGHPUT_SCHEMA = ('{"type": "object", "properties": {"name": {"type": "string"}, '
                     '"year": {"type": "integer"}, "tags": {"type": "array", "items": '
                     '{"type": "string"}}}, "required": ["name", "year", "tags"]}')


# ---- one request, two paths ------------------------------------------------------------

async def playground_request(engine: Engine, prompt: str, constraint: Constraint | None,
                             settings: SamplingSettings, judge: Constraint) -> dict[str, Any]:
    result = [r async for r in stream_run(engine, prompt, constraint, settings, judge)][-1]
    return {"tokens": result.output_tokens, "ttft_s": result.ttft_s,
            "latency_s": result.latency_s, "verdict": result.verdict,
            "constraint_escaped": result.constraint_escaped, "compile_s": result.compile_s}


# ---- measurements ----------------------------------------------------------------------

def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def _rate(run: dict[str, Any]) -> float | None:
    if run["ttft_s"] is None or run["tokens"] < 2 or run["latency_s"] <= run["ttft_s"]:
        return None
    return (run["tokens"] - 1) / (run["latency_s"] - run["ttft_s"])


async def single_requests(engine: Engine, reps: int, log) -> dict[str, Any]:
    """Per mode: one request at a time, the two paths alternating."""
    presets = load_presets()
    per_mode: dict[str, Any] = {}
    for mode, name in MODES_PRESETS.items():
        preset = presets[name]
        constraint = preset.to_constraint()
        settings = preset.settings.model_copy(update={"temperature": 0.0})
        ours, raw = [], []
        await playground_request(engine, preset.prompt, constraint, settings, constraint)
        for _ in range(reps):
            raw.append(await engine.raw_request(preset.prompt, constraint, settings))
            ours.append(await playground_request(engine, preset.prompt, constraint, settings,
                                                 constraint))
        row = {
            "playground": {"latency_s": _median(ours, "latency_s"),
                           "ttft_s": _median(ours, "ttft_s"),
                           "tokens_per_s": statistics.median([_rate(r) or 0 for r in ours]),
                           "output_tokens": ours[-1]["tokens"], "verdict": ours[-1]["verdict"]},
            "raw": {"latency_s": _median(raw, "latency_s"), "ttft_s": _median(raw, "ttft_s"),
                    "tokens_per_s": statistics.median([_rate(r) or 0 for r in raw]),
                    "output_tokens": raw[-1]["tokens"]},
        }
        row["latency_ratio"] = row["playground"]["latency_s"] / row["raw"]["latency_s"]
        per_mode[mode] = row
        log(f"  {mode:8} latency {row['playground']['latency_s']:.3f} s vs raw "
            f"{row['raw']['latency_s']:.3f} s (ratio {row['latency_ratio']:.3f}), "
            f"{row['playground']['tokens_per_s']:.1f} tok/s, ttft "
            f"{row['playground']['ttft_s']:.3f} s")
    return per_mode


async def throughput(engine: Engine, constrained: bool, path: str,
                     lengths: list[int]) -> dict[str, Any]:
    """`len(lengths)` requests at once, request i allowed `lengths[i]` output tokens."""
    from playground.core.constraints import from_text

    constraint = from_text("json", THROUGHPUT_SCHEMA)
    prompts = [f"Describe {TOPICS[i % len(TOPICS)]} number {i} as JSON with name, year and "
               "tags." for i in range(len(lengths))]
    used = constraint if constrained else None

    async def one(prompt: str, length: int) -> dict[str, Any]:
        settings = SamplingSettings(max_tokens=length)
        if path == "playground":
            return await playground_request(engine, prompt, used, settings, constraint)
        return await engine.raw_request(prompt, used, settings)

    start = time.perf_counter()
    runs = await asyncio.gather(*(one(p, n) for p, n in zip(prompts, lengths, strict=True)))
    wall = time.perf_counter() - start
    tokens = sum(run["tokens"] for run in runs)
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
            "lengths": [run["tokens"] for run in runs],
            # Constrained outputs that do not fit: a backend bug, never a speed to report.
            "constraint_escaped": sum(run.get("constraint_escaped", False) for run in runs)}


async def throughput_table(engine: Engine, levels: list[int], reps: int, max_tokens: int,
                           log) -> dict[str, Any]:
    """Per level, `reps` rounds of four runs back to back (raw and playground, constrained
    and free; raw or the playground first by turns), so slow drifts of the machine hit all
    four alike; ratios are medians over the rounds. Free requests get each constrained
    request's length, so both sides do the same work and constrained/free is the
    constraint's own cost: a constrained JSON can close before max_tokens and a thinning
    batch makes fewer tokens per second."""
    table: dict[str, Any] = {}
    for level in levels:
        # Short bursts first, not counted: the first round at a new level met vLLM's
        # first batch of that size and both grammar caches cold (0.63 of the others'
        # constrained/free at 128 on the H200, 0.26-0.29 in tools/gpu/tail_ab.py).
        for path in ("raw", "playground"):
            await throughput(engine, True, path, [min(16, max_tokens)] * level)
        rounds = []
        for index in range(reps):
            run: dict[str, Any] = {}
            # Who goes first alternates, so neither path always meets the machine as the
            # other's burst left it (its caches, its clocks).
            paths = ("raw", "playground") if index % 2 == 0 else ("playground", "raw")
            for path in paths:
                burst = await throughput(engine, True, path, [max_tokens] * level)
                run[f"{path}_constrained"] = burst["tokens_per_s"]
                if path == "raw":
                    lengths = burst["lengths"]
            for path in paths:
                run[f"{path}_free"] = (await throughput(engine, False, path, lengths))[
                    "tokens_per_s"]
            run["constrained_tokens_mean"] = statistics.mean(lengths)
            rounds.append(run)
        ratios = {
            "throughput_ratio": ("playground_constrained", "raw_constrained"),
            "throughput_ratio_free": ("playground_free", "raw_free"),
            "constrained_free_ratio": ("playground_constrained", "playground_free"),
            "raw_constrained_free_ratio": ("raw_constrained", "raw_free"),
        }
        cell: dict[str, Any] = {key: statistics.median(run[key] for run in rounds)
                                for key in rounds[0]}
        for name, (top, bottom) in ratios.items():
            cell[name] = statistics.median(run[top] / run[bottom] for run in rounds)
        cell["constrained_free_ratio_per_round"] = [
            run["playground_constrained"] / run["playground_free"] for run in rounds]
        cell["max_tokens"], cell["rounds"] = max_tokens, reps
        table[str(level)] = cell
        spread = cell["constrained_free_ratio_per_round"]
        log(f"  {level:4} concurrent: constrained {cell['playground_constrained']:.1f} tok/s "
            f"(raw {cell['raw_constrained']:.1f}, {cell['constrained_tokens_mean']:.0f} tokens "
            f"a request), free {cell['playground_free']:.1f} (raw {cell['raw_free']:.1f}); "
            f"throughput ratio {cell['throughput_ratio']:.3f}, constrained/free "
            f"{cell['constrained_free_ratio']:.3f} (rounds {min(spread):.3f}-{max(spread):.3f})")
    return table


async def compile_times(engine: Engine) -> dict[str, Any]:
    """Grammar compile time, cold (never seen) and cached (seen before)."""
    from playground.core.constraints import from_text

    def unseen() -> Constraint:
        schema = json.loads(THROUGHPUT_SCHEMA)
        # A property no cache has seen: a new title alone would leave xgrammar's grammar,
        # and so its cache key, unchanged.
        schema["properties"][f"nonce_{time.time_ns()}"] = {"type": "string"}
        return from_text("json", json.dumps(schema))

    settings = SamplingSettings(max_tokens=1)
    constraint = unseen()
    cold = await playground_request(engine, "Hi", constraint, settings, constraint)
    if cold["compile_s"] is not None:  # the engine times its own compile (the CPU engine)
        cached = await playground_request(engine, "Hi", constraint, settings, constraint)
        return {"cold_s": cold["compile_s"], "cached_s": cached["compile_s"],
                "how": "the engine's own compile timing (a new, then the same, schema)"}
    # vLLM compiles inside its engine and says nothing of it: the time to first token of a
    # new grammar against that of one seen before.
    constraint = unseen()
    runs = [await engine.raw_request("Hi", constraint, settings) for _ in range(2)]
    return {"cold_s": runs[0]["ttft_s"], "cached_s": runs[1]["ttft_s"],
            "how": "time to first token of a 1-token request with a new, then the same, "
                   "schema (the difference is the compile)"}


def startup_times(engine_args: list[str], log) -> dict[str, Any]:
    """Launch `playground serve`: seconds to the page served, and to the model ready."""
    from playground.bench.launch import launched_app

    # What others hold (a vLLM server for --engine openai) stays held: wait for ours only.
    before = _gpu_memory_used() or 0
    try:
        with launched_app(engine_args) as app:
            page = app.wait_served(limit_s=300)
            ready = app.wait_ready(limit_s=600)
    finally:
        _wait_for_gpu_memory(before)
    log(f"  page served {page:.2f} s, model ready {ready:.2f} s after launch")
    return {"page_served_s": page, "model_ready_s": ready}


def second_start_s(engine_args: list[str], log, runs: int = 3) -> list[float]:
    """A fresh Python process loading the engine, caches warm: launch to model ready."""
    code = ("import sys\n"
            "from playground.engines.registry import create_engine, defaults\n"
            "create_engine(defaults(sys.argv[1:])).load()\n"
            "print('ready', flush=True)\n")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        with tempfile.TemporaryFile("w+") as errors:
            process = subprocess.Popen([sys.executable, "-c", code, *engine_args],
                                       stdout=subprocess.PIPE, stderr=errors, text=True)
            line = process.stdout.readline() if process.stdout else ""
            elapsed = time.perf_counter() - start
            process.kill()
            process.wait()
            if line.strip() != "ready":
                errors.seek(0)
                last = (errors.read().strip().splitlines() or ["(nothing on stderr)"])[-1]
                raise RuntimeError(f"the engine did not load in a fresh process: {last}")
        times.append(elapsed)
    log(f"  second start (fresh process, engine only): "
        f"{', '.join(f'{t:.2f}' for t in times)} s")
    return times


def _gpu_memory_used() -> int | None:
    """MiB in use on the first GPU; None without one."""
    try:
        used = subprocess.run(["nvidia-smi", "--query-gpu=memory.used",
                               "--format=csv,noheader,nounits"], capture_output=True,
                              text=True, timeout=10).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return int(used[0]) if used and used[0].isdigit() else None


def _wait_for_gpu_memory(before: int = 0, limit_s: float = 90) -> None:
    """Until the launched app's GPU memory is given back (no-op without a GPU)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        used = _gpu_memory_used()
        if used is None or used < before + 2000:
            return
        time.sleep(1)


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpus": os.cpu_count()}
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        info["gpu"] = gpu or None
    except (OSError, subprocess.TimeoutExpired):
        info["gpu"] = None
    return info


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in ("torch", "transformers", "xgrammar", "vllm", "gradio", "llama_cpp_python"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


async def inspect_cost(engine: Engine, reps: int, max_tokens: int, log) -> dict[str, Any]:
    """The token inspector's extra time: one click (`run_request`: both runs) with it off
    and on, alternating; the extra wall time over the click's own, medians over `reps`.
    A first inspected click builds the tokenizer's matcher vocabulary (once per process):
    reported as `first_inspect_s`, not in the medians."""
    from playground.run.service import run_request

    prompt = "Describe a car as JSON with name, year and tags."
    options = {"max_tokens": max_tokens, "temperature": 0.0}

    async def click(inspect: bool) -> tuple[float, dict[str, Any]]:
        start = time.perf_counter()
        result = await run_request(engine, "json", THROUGHPUT_SCHEMA, prompt,
                                   {**options, "inspect": inspect})
        return time.perf_counter() - start, result

    first = (await click(True))[1]
    offs, extras, inspect_s = [], [], []
    for rep in range(reps):
        order = (False, True) if rep % 2 == 0 else (True, False)
        walls = {}
        for inspect in order:
            walls[inspect], result = await click(inspect)
            if inspect:
                sides = [result[side]["inspect_s"] or 0.0
                         for side in ("constrained", "unconstrained")]
                inspect_s.append(max(sides) if engine.concurrent else sum(sides))
        offs.append(walls[False])
        extras.append(walls[True] - walls[False])
    tokens = result["constrained"]["output_tokens"]
    row = {"max_tokens": max_tokens, "constrained_tokens": tokens, "reps": reps,
           "click_s": statistics.median(offs), "extra_s": statistics.median(extras),
           "inspect_s": statistics.median(inspect_s),
           "first_inspect_s": max(first[side]["inspect_s"] or 0.0
                                  for side in ("constrained", "unconstrained"))}
    row["overhead"] = row["extra_s"] / row["click_s"]
    log(f"  click {row['click_s']:.3f} s ({tokens} constrained tokens), inspector +"
        f"{row['extra_s']:.3f} s wall ({row['overhead']:.1%}), inspect_s "
        f"{row['inspect_s']:.3f} s; first inspection {row['first_inspect_s']:.3f} s")
    return row


def goals(report: dict[str, Any]) -> dict[str, Any]:
    tp = report.get("throughput", {})
    values: dict[str, Any] = {
        "latency_ratio": report["latency_ratio"],
        **{f"throughput_ratio@{level}": tp.get(level, {}).get("throughput_ratio")
           for level in ("8", "32", "128")},
        **{f"json_constrained_free_ratio@{level}": tp.get(level, {}).get(
            "constrained_free_ratio") for level in ("32", "128")},
        "page_served_s": (report.get("page_served_s")
                          if report["engine"] in ("vllm", "openai") else None),
    }
    if report["engine"] == "cpu":
        values["cpu_tokens_per_s"] = report["single"]["json"]["playground"]["tokens_per_s"]
        values["cpu_ttft_s"] = max(row["playground"]["ttft_s"] for row in report["single"].values())
        values["cpu_second_start_s"] = report.get("second_start_s")
        values["cpu_vs_llama_cpp"] = (report.get("llama_cpp") or {}).get("ratio")
        batching = report.get("batching") or {}
        values["cpu_click_batched_serial"] = batching.get("click", {}).get("ratio")
        values["cpu_sessions_aggregate"] = batching.get("sessions", {}).get("ratio")
    if report["engine"] == "vllm" and report.get("inspect"):  # the target is the H100's
        values["inspect_overhead"] = report["inspect"]["overhead"]
    result = {}
    for name, value in values.items():
        if value is None:
            continue
        op, target = GOALS[name]
        met = value <= target if op == "<=" else value >= target if op == ">=" else value < target
        result[name] = {"value": value, "target": f"{op} {target}", "met": met}
    return result


async def run_bench(engine: Engine, engine_kind: str, quick: bool, log,
                    rounds: int | None = None) -> dict[str, Any]:
    reps = 3 if quick else 5
    levels = [1, 4] if engine_kind == "cpu" else [1, 8, 32, 128]
    max_tokens = (32 if quick else 64) if engine_kind == "cpu" else 256
    # The raw path may load its own reference model on first use: not in any timing.
    await engine.raw_request("Hi", None, SamplingSettings(max_tokens=1))
    # As a server does at start: the validation workers' imports are not in any timing.
    await asyncio.to_thread(judge.warm_up)
    log("single requests, playground path vs raw engine:")
    single = await single_requests(engine, reps, log)
    log(f"throughput, JSON schema, max {max_tokens} tokens:")
    if rounds is None:
        rounds = (1 if quick else 3) if engine_kind == "cpu" else (3 if quick else 5)
    table = await throughput_table(engine, levels, rounds, max_tokens, log)
    log("grammar compile:")
    compile_s = await compile_times(engine)
    log(f"  cold {compile_s['cold_s']:.4f} s, cached {compile_s['cached_s']:.4f} s")
    inspect = None
    if engine.inspects:
        log(f"token inspector, JSON schema, max {max_tokens} tokens, one click off and on:")
        inspect = await inspect_cost(engine, reps if engine_kind != "cpu" else 3, max_tokens, log)
    ratios = [row["latency_ratio"] for row in single.values()]
    return {
        "engine": engine_kind, "model": engine.info.model,
        "engine_options": engine.info.options,
        "quick": quick,
        "latency_ratio": statistics.median(ratios),
        "latency_ratio_per_mode": {mode: row["latency_ratio"] for mode, row in single.items()},
        "throughput_ratio": {level: cell["throughput_ratio"] for level, cell in table.items()},
        "constrained_free_ratio": {level: cell["constrained_free_ratio"]
                                   for level, cell in table.items()},
        "tokens_per_s": {mode: row["playground"]["tokens_per_s"] for mode, row in single.items()},
        "ttft_s": {mode: row["playground"]["ttft_s"] for mode, row in single.items()},
        "compile_s": compile_s,
        "inspect": inspect,
        "single": single,
        "throughput": table,
        "llama_cpp": await llama_cpp_reference.section(engine, engine_kind, single, reps, log),
        "batching": await cpu_batching.section(engine, engine_kind, quick, log),
    }


def print_table(report: dict[str, Any]) -> None:
    print(f"\nengine {report['engine']} ({report['model']}) on {report['machine']}")
    print(f"{'mode':8} {'latency s':>10} {'raw s':>8} {'ratio':>6} {'ttft s':>7} {'tok/s':>7}")
    for mode, row in report["single"].items():
        ours, raw = row["playground"], row["raw"]
        print(f"{mode:8} {ours['latency_s']:10.3f} {raw['latency_s']:8.3f} "
              f"{row['latency_ratio']:6.3f} {ours['ttft_s']:7.3f} {ours['tokens_per_s']:7.1f}")
    print(f"\n{'concurrent':>10} {'constr tok/s':>13} {'raw':>9} {'free tok/s':>11} {'raw':>9} "
          f"{'tp ratio':>9} {'c/f ratio':>10} {'c/f rounds':>12} {'tokens':>7}")
    for level, cell in report["throughput"].items():
        spread = cell["constrained_free_ratio_per_round"]
        print(f"{level:>10} {cell['playground_constrained']:13.1f} {cell['raw_constrained']:9.1f}"
              f" {cell['playground_free']:11.1f} {cell['raw_free']:9.1f} "
              f"{cell['throughput_ratio']:9.3f} {cell['constrained_free_ratio']:10.3f} "
              f"{min(spread):5.3f}-{max(spread):5.3f} {cell['constrained_tokens_mean']:7.1f}")
    print("(medians over rounds; free requests get each constrained request's length, "
          "'tokens' on average)")
    print(f"\ncompile: cold {report['compile_s']['cold_s']:.4f} s, cached "
          f"{report['compile_s']['cached_s']:.4f} s; page served "
          f"{report.get('page_served_s', float('nan')):.2f} s, model ready "
          f"{report.get('model_ready_s', float('nan')):.2f} s after launch")
    if "second_start_s" in report:
        print(f"second start of the engine alone (fresh process): "
              f"{report['second_start_s']:.2f} s")
    if report.get("inspect"):
        row = report["inspect"]
        print(f"token inspector: click {row['click_s']:.3f} s ({row['constrained_tokens']} "
              f"constrained tokens), +{row['extra_s']:.3f} s with it on "
              f"({row['overhead']:.1%}), inspect_s {row['inspect_s']:.3f} s")
    llama_cpp_reference.print_section(report)
    cpu_batching.print_section(report)
    print("\ngoals:")
    for name, goal in report["goals"].items():
        print(f"  {name:32} {goal['value']:9.3f}  target {goal['target']:8}  "
              f"{'met' if goal['met'] else 'NOT met'}")


def main(args: argparse.Namespace) -> dict[str, Any]:
    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    kind = args.engine if args.engine != "auto" else None
    engine = create_engine(args, log=log)
    kind = kind or ("vllm" if engine.info.device == "cuda" else "cpu")
    # Every engine flag the bench was given, so the launched app runs the same engine.
    flags = engine_argv(args, engine=kind)
    if getattr(args, "browser", False):  # the page against the API, on a launched app
        from playground.bench import browser

        report = browser.main(args, flags)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        return report
    log("launch to page served and model ready:")
    startup = startup_times(flags, log)
    if kind == "cpu":  # the app above has filled the caches, so this start is a second one
        times = second_start_s(flags, log)
        startup.update(second_start_s=statistics.median(times), second_start_runs_s=times)
    log("loading the engine in this process …")
    engine.load()
    report = asyncio.run(run_bench(engine, kind, args.quick, log, getattr(args, "rounds", None)))
    report.update(startup)
    report["machine"], report["versions"] = machine(), versions()
    report["goals"] = goals(report)
    engine.shutdown()
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        from playground.bench.plots import plot

        plot(report, args.plot)
    return report
