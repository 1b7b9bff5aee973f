"""`python -m playground suite DIR`: the doctor over a folder of JSONSchemaBench files.

Each file holds {"schema", "tests": [{"data", "valid"}]} (tests/data/jsonschemabench, drawn
from MaskBench). Per backend it reports:

- compiles / rejected: the backend's own compiler (vLLM's request validation for `vllm:`),
  with compile time p50 and p99 (a byte-level vocabulary on this machine's CPU: the cost of
  the schema, not of a model's tokenizer);
- MaskBench-style pass: compiles, and its matcher accepts every valid test document and
  refuses every invalid one (documents as compact JSON; MaskBench checks token masks over a
  real tokenizer, so this is the same question asked of text, not its figure);
- coverage: the doctor's per-keyword labels, summed, and the schemas fully covered;
- with a model (`--engine cpu|vllm`, or `openai` for a `vllm serve` at `--base-url`): the
  share of constrained outputs the validator accepts.

Schemas run `--jobs` at a time, each in its own worker process; results keep file order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from playground.doctor import testers
from playground.doctor.coverage import coverage
from playground.errors import WorkerDied, WorkTimeout

LABELS = ("enforced", "not enforced", "rejected", "untested")
# A worker holds xgrammar, torch and (with --vllm) vLLM imported: ~1 GB each.
MAX_JOBS = 32
# Constrained requests in flight at once for an engine that batches (vLLM): the app's
# default --concurrency with vLLM.
CONCURRENT_REQUESTS = 64


def default_jobs() -> int:
    """Schemas at once: every core this process may use but one (for the main process and
    the system), at most MAX_JOBS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores - 1, MAX_JOBS))


def load(folder: str | Path, limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    paths = sorted(Path(folder).glob("*.json"))
    if not paths:
        raise FileNotFoundError(f"no .json files in {folder}")
    step = max(len(paths) // limit, 1) if limit else 1  # a sample spread over the subsets
    picked = paths[::step][:limit] if limit else paths
    return [(path.name, json.loads(path.read_text(encoding="utf-8"))) for path in picked]


def one_schema(name: str, data: dict[str, Any], backends: list[str],
               time_limit_s: float) -> dict[str, Any]:
    schema = data["schema"]
    out: dict[str, Any] = {"file": name, "backends": {}}
    for backend in backends:
        start = time.perf_counter()
        reason = testers.refusal(backend, schema)
        compile_s = time.perf_counter() - start
        entry: dict[str, Any] = {"compiles": reason is None, "message": reason,
                                 "compile_s": compile_s}
        if reason is None:
            try:
                tester = testers.compile_tester(backend, schema)
            except Exception as exc:  # vLLM took it, the matcher did not: say so
                entry["matcher_error"] = str(exc)
                tester = None
            if tester is not None:
                valid = [t for t in data.get("tests", []) if t["valid"]]
                invalid = [t for t in data.get("tests", []) if not t["valid"]]
                entry["valid_accepted"] = sum(
                    tester.test(testers.text_of(t["data"])).matches for t in valid)
                entry["invalid_rejected"] = sum(
                    not tester.test(testers.text_of(t["data"])).matches for t in invalid)
                entry["valid"], entry["invalid"] = len(valid), len(invalid)
                entry["maskbench_pass"] = (entry["valid_accepted"] == len(valid)
                                           and entry["invalid_rejected"] == len(invalid))
        out["backends"][backend] = entry
    try:
        table = coverage(schema, backends, time_limit_s)
        for backend in backends:
            counts = Counter(row.backends.get(backend) for row in table.rows)
            out["backends"][backend]["keywords"] = {label: counts[label] for label in LABELS}
            out["backends"][backend]["full_coverage"] = table.full(backend)
    except Exception as exc:  # one odd schema must not stop a suite of hundreds
        out["coverage_error"] = f"{type(exc).__name__}: {exc}"
    return out


def bounded_schema(name: str, data: dict[str, Any], backends: list[str],
                   time_limit_s: float) -> dict[str, Any]:
    """`one_schema` in a worker process, killed past its limit: a compiler that never
    returns (a schema's grammar can take minutes and gigabytes) costs one schema, not the
    suite. The limit: the coverage's, and as long again for compiling and matching."""
    from functools import partial

    from playground.judging import workers

    try:
        return workers.call(one_schema, name, data, backends, time_limit_s,
                            timeout=2 * time_limit_s + 30, setup=partial(testers.warm, backends))
    except (WorkTimeout, WorkerDied) as exc:
        return {"file": name, "timeout": str(exc),
                "backends": {b: {"compiles": None, "compile_s": None} for b in backends}}


def run_all(files: list[tuple[str, dict[str, Any]]], backends: list[str],
            time_limit_s: float, jobs: int = 1,
            emit: Callable[[dict[str, Any]], Any] = lambda result: None
            ) -> list[dict[str, Any]]:
    """`bounded_schema` for every file, `jobs` at a time (each in its own worker process,
    so a schema past its limit still costs only itself). Results in file order, each also
    given to `emit` in file order as soon as those before it are done; "[i/N] name" on
    stderr as each one finishes (with several jobs, the largest schemas start first)."""
    from playground.judging import workers

    jobs = max(1, min(jobs, len(files)))
    # The pool of worker processes grows to the jobs for this run only.
    default_workers = workers.MAX_WORKERS
    workers.resize(max(default_workers, jobs))
    try:
        return _run_all(files, backends, time_limit_s, jobs, emit)
    finally:
        workers.resize(default_workers)


def _run_all(files: list[tuple[str, dict[str, Any]]], backends: list[str],
             time_limit_s: float, jobs: int, emit: Callable[[dict[str, Any]], Any]
             ) -> list[dict[str, Any]]:
    from playground.judging import workers

    results: list[dict[str, Any] | None] = [None] * len(files)
    emitted = 0

    def finished(index: int, result: dict[str, Any], done: int) -> None:
        nonlocal emitted
        results[index] = result
        print(f"[{done}/{len(files)}] {files[index][0]}", file=sys.stderr, flush=True)
        while emitted < len(files) and results[emitted] is not None:
            emit(results[emitted])
            emitted += 1

    if jobs == 1:  # in this thread: the worker is forked from it (no fork server)
        for index, (name, data) in enumerate(files):
            finished(index, bounded_schema(name, data, backends, time_limit_s), index + 1)
        return results  # type: ignore[return-value]
    # The largest schemas first: a slow one (up to its limit) then runs beside the others
    # rather than alone at the end. Stable: schemas of one size keep file order.
    order = sorted(range(len(files)), key=lambda i: -len(json.dumps(files[i][1].get("schema"))))
    pool = ThreadPoolExecutor(jobs, thread_name_prefix="suite")
    futures = {pool.submit(bounded_schema, *files[index], backends, time_limit_s): index
               for index in order}
    try:
        for done, future in enumerate(as_completed(futures), start=1):
            finished(futures[future], future.result(), done)
    except BaseException:  # e.g. vLLM's API moved, or Ctrl-C: stop now, not after every
        pool.shutdown(wait=False, cancel_futures=True)  # schema running reaches its limit
        workers.stop_all()
        raise
    pool.shutdown()
    return results  # type: ignore[return-value]


def summarize(results: list[dict[str, Any]], backends: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {"schemas": len(results), "backends": {}}
    for backend in backends:
        entries = [r["backends"][backend] for r in results]
        times = sorted(e["compile_s"] for e in entries if e["compile_s"] is not None)
        keywords = Counter()
        for entry in entries:
            keywords.update(entry.get("keywords", {}))
        summary["backends"][backend] = {
            "compiles": sum(e["compiles"] is True for e in entries),
            "rejected": sum(e["compiles"] is False for e in entries),
            "timeouts": sum(e["compiles"] is None for e in entries),
            "maskbench_pass": sum(bool(e.get("maskbench_pass")) for e in entries),
            "full_coverage": sum(bool(e.get("full_coverage")) for e in entries),
            "keywords": {label: keywords[label] for label in LABELS},
            "compile_p50_s": round(statistics.median(times), 5) if times else None,
            "compile_p99_s": round(_percentile(times, 0.99), 5) if times else None,
        }
    return summary


def _percentile(values: list[float], q: float) -> float:
    index = min(int(round(q * (len(values) - 1))), len(values) - 1)
    return values[index]


def generate(engine: Any, files: list[tuple[str, dict[str, Any]]], max_tokens: int,
             results: list[dict[str, Any]]) -> dict[str, Any]:
    """One constrained output per schema from the engine; the validator's verdicts."""
    from playground.core.constraints import JsonSchema
    from playground.core.settings import SamplingSettings
    from playground.errors import ConstraintError
    from playground.run.service import stream_run

    settings = SamplingSettings(max_tokens=max_tokens)
    verdicts: Counter[str] = Counter()

    async def one(schema: Any) -> Any:
        constraint = JsonSchema(schema)
        prompt = f"Write one JSON document that fits this JSON Schema:\n{json.dumps(schema)}"
        snapshots = [s async for s in stream_run(engine, prompt[:4000], constraint, settings,
                                                 constraint)]
        return snapshots[-1]

    async def each(data: dict[str, Any], result: dict[str, Any],
                   room: asyncio.Semaphore) -> None:
        if "timeout" in result:
            return
        async with room:
            try:  # in a thread: vLLM's outlines check of a large schema takes seconds
                await asyncio.to_thread(engine.check, JsonSchema(data["schema"]))
            except ConstraintError as exc:
                result["generation"] = {"verdict": "refused", "error": str(exc)}
                verdicts["refused"] += 1
                return
            final = await one(data["schema"])
        result["generation"] = {"verdict": final.verdict, "errors": final.errors[:3],
                                "text": final.text[:2000]}
        verdicts[final.verdict] += 1

    async def every() -> None:  # one event loop for all: vLLM's engine is bound to it
        # An engine that batches (vLLM) gets many requests at once; the CPU model, one.
        room = asyncio.Semaphore(CONCURRENT_REQUESTS if engine.concurrent else 1)
        await asyncio.gather(*(each(data, result, room)
                               for (_, data), result in zip(files, results, strict=True)))

    asyncio.run(every())
    generated = sum(verdicts[v] for v in verdicts if v != "refused")
    return {"engine": engine.info.as_dict(), "verdicts": dict(verdicts),
            "validity": verdicts["valid"] / generated if generated else None}


def main(args: argparse.Namespace) -> dict[str, Any]:
    files = load(args.dir, args.limit)
    engine = None
    if args.engine not in (None, "none"):  # made now: a flag mistake fails before the suite
        from playground.engines.registry import engine_from_flags

        engine = engine_from_flags(args, log=lambda message: print(message, file=sys.stderr))
    backends = args.backend or testers.available_backends(include_vllm=args.vllm)
    jobs = getattr(args, "jobs", None) or default_jobs()
    jsonl = open(args.jsonl, "w", encoding="utf-8") if args.jsonl else None  # noqa: SIM115
    try:
        results = run_all(files, backends, args.time_limit_s, jobs,
                          lambda result: jsonl.write(json.dumps(result) + "\n")
                          if jsonl else None)
    finally:
        if jsonl:
            jsonl.close()
    summary = summarize(results, backends)
    if engine is not None:
        try:
            engine.load()
            summary["generation"] = generate(engine, files, args.max_tokens, results)
        finally:
            engine.shutdown()
        if args.jsonl:
            Path(args.jsonl).write_text("".join(json.dumps(r) + "\n" for r in results),
                                        encoding="utf-8")
    return summary
