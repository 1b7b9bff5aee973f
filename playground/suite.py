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
- with a model (`--engine cpu`): the share of constrained outputs the validator accepts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from playground import coverage as cov

LABELS = ("enforced", "not enforced", "rejected", "untested")


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
        reason = cov.refusal(backend, schema)
        compile_s = time.perf_counter() - start
        entry: dict[str, Any] = {"compiles": reason is None, "message": reason,
                                 "compile_s": compile_s}
        if reason is None:
            try:
                tester = cov.compile_tester(backend, schema)
            except Exception as exc:  # vLLM took it, the matcher did not: say so
                entry["matcher_error"] = str(exc)
                tester = None
            if tester is not None:
                valid = [t for t in data.get("tests", []) if t["valid"]]
                invalid = [t for t in data.get("tests", []) if not t["valid"]]
                entry["valid_accepted"] = sum(
                    tester.test(cov.text_of(t["data"])).matches for t in valid)
                entry["invalid_rejected"] = sum(
                    not tester.test(cov.text_of(t["data"])).matches for t in invalid)
                entry["valid"], entry["invalid"] = len(valid), len(invalid)
                entry["maskbench_pass"] = (entry["valid_accepted"] == len(valid)
                                           and entry["invalid_rejected"] == len(invalid))
        out["backends"][backend] = entry
    try:
        table = cov.coverage(schema, backends, time_limit_s)
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

    from playground import bounded

    try:
        return bounded.call(one_schema, name, data, backends, time_limit_s,
                            timeout=2 * time_limit_s + 30, setup=partial(cov.warm, backends))
    except (bounded.WorkTimeout, bounded.WorkerDied) as exc:
        return {"file": name, "timeout": str(exc),
                "backends": {b: {"compiles": None, "compile_s": None} for b in backends}}


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
    from playground.constraints import ConstraintError, JsonSchema
    from playground.service import stream_run
    from playground.settings import SamplingSettings

    settings = SamplingSettings(max_tokens=max_tokens)
    verdicts: Counter[str] = Counter()

    async def one(schema: Any) -> Any:
        constraint = JsonSchema(schema)
        prompt = f"Write one JSON document that fits this JSON Schema:\n{json.dumps(schema)}"
        snapshots = [s async for s in stream_run(engine, prompt[:4000], constraint, settings,
                                                 constraint)]
        return snapshots[-1]

    async def every() -> None:  # one event loop for all: vLLM's engine is bound to it
        for (_, data), result in zip(files, results, strict=True):
            if "timeout" in result:
                continue
            try:
                engine.check(JsonSchema(data["schema"]))
            except ConstraintError as exc:
                result["generation"] = {"verdict": "refused", "error": str(exc)}
                verdicts["refused"] += 1
                continue
            final = await one(data["schema"])
            result["generation"] = {"verdict": final.verdict, "errors": final.errors[:3],
                                    "text": final.text[:2000]}
            verdicts[final.verdict] += 1

    asyncio.run(every())
    generated = sum(verdicts[v] for v in verdicts if v != "refused")
    return {"engine": engine.info.as_dict(), "verdicts": dict(verdicts),
            "validity": verdicts["valid"] / generated if generated else None}


def main(args: argparse.Namespace) -> dict[str, Any]:
    files = load(args.dir, args.limit)
    backends = args.backend or cov.available_backends(include_vllm=args.vllm)
    jsonl = open(args.jsonl, "w", encoding="utf-8") if args.jsonl else None  # noqa: SIM115
    results = []
    try:
        for index, (name, data) in enumerate(files, start=1):
            result = bounded_schema(name, data, backends, args.time_limit_s)
            results.append(result)
            if jsonl:
                jsonl.write(json.dumps(result) + "\n")
            print(f"[{index}/{len(files)}] {name}", file=sys.stderr)
    finally:
        if jsonl:
            jsonl.close()
    summary = summarize(results, backends)
    if args.engine not in (None, "none"):
        from playground.engines import create_engine

        engine = create_engine(args, log=lambda message: print(message, file=sys.stderr))
        engine.load()
        summary["generation"] = generate(engine, files, args.max_tokens, results)
        if args.jsonl:
            Path(args.jsonl).write_text("".join(json.dumps(r) + "\n" for r in results),
                                        encoding="utf-8")
    return summary
